//! kube-rs against a real `skiff server`: list/watch/create/patch, watch ordering under
//! concurrent writers, durability across kill -9, and bad input answered with Status.

mod common;

use common::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": v}})).unwrap()
}

#[tokio::test]
async fn list_watch_create_patch() {
    let c = Cluster::start();
    let client = c.kube_client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let patch = json!({"data": {"v": "2"}});
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["v"], "2");
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(o) => assert_eq!(o.data.unwrap()["v"], "2"),
        other => panic!("unexpected {other:?}"),
    }

    // Server-side apply through kube-rs.
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "x"}});
    let b = cms
        .patch(
            "b",
            &PatchParams::apply("skiff-test"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(b.data.unwrap()["k"], "x");
    assert!(
        b.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("skiff-test"))
    );

    let list = cms.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert!(names.contains(&"a".to_string()) && names.contains(&"b".to_string()));

    // Paging with limit/continue.
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("page-{i}"), "x"))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3).labels("");
    loop {
        let page = cms.list(&lp).await.unwrap();
        seen.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    // Nine of ours and the kube-root-ca.crt every namespace has.
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen.contains(&"kube-root-ca.crt".to_string()));

    // Optimistic concurrency: a stale resourceVersion is a 409.
    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("v".to_string(), "stale".to_string())]));
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watch_sees_every_write_once_in_order() {
    let c = Cluster::start();
    let client = c.kube_client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms
        .create(&PostParams::default(), &cm("start", "0"))
        .await
        .unwrap();
    let from = start.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(60), &from)
        .await
        .unwrap()
        .boxed();

    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let mut rvs = Vec::new();
            let name = format!("w{w}");
            let first = cms
                .create(&PostParams::default(), &cm(&name, "0"))
                .await
                .unwrap();
            rvs.push(first.metadata.resource_version.unwrap());
            for i in 1..EACH {
                let p = json!({"data": {"v": i.to_string()}});
                let o = cms
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&p))
                    .await
                    .unwrap();
                rvs.push(o.metadata.resource_version.unwrap());
            }
            rvs
        }));
    }
    let mut acked = HashSet::new();
    for t in tasks {
        for rv in t.await.unwrap() {
            acked.insert(rv.parse::<i64>().unwrap());
        }
    }
    let mut seen = Vec::new();
    let mut per_object: BTreeMap<String, i64> = BTreeMap::new();
    while seen.len() < acked.len() {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("watch stalled")
            .unwrap()
            .unwrap();
        let obj = match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
            other => panic!("unexpected {other:?}"),
        };
        let rv: i64 = obj.metadata.resource_version.unwrap().parse().unwrap();
        let v: i64 = obj.data.unwrap()["v"].parse().unwrap();
        let name = obj.metadata.name.unwrap();
        // Per object, values arrive in the order they were written.
        if let Some(prev) = per_object.insert(name.clone(), v) {
            assert_eq!(v, prev + 1, "{name} out of order");
        }
        seen.push(rv);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "events out of revision order");
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "duplicated events");
    assert_eq!(unique, acked, "missed events");
}

#[tokio::test]
async fn acknowledged_creates_survive_kill_9() {
    let mut c = Cluster::start();
    let cl = c.kube_client().await;
    let cms: Api<ConfigMap> = Api::namespaced(cl.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let cms = cms.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let name = format!("burst-{w}-{i}");
                match cms.create(&PostParams::default(), &cm(&name, "x")).await {
                    Ok(_) => {
                        if tx.send(name).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    drop(tx);
    // Let a few hundred creates land, then pull the plug mid-burst.
    let mut acked = Vec::new();
    while acked.len() < 300 {
        acked.push(rx.recv().await.expect("creates stopped early"));
    }
    c.kill9();
    while let Ok(Some(n)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        acked.push(n);
    }
    for t in tasks {
        let _ = t.await;
    }
    c.spawn();
    let cl = c.kube_client().await;
    let cms: Api<ConfigMap> = Api::namespaced(cl, "default");
    let present: HashSet<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged creates lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

async fn raw(client: &Client, method: &str, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
    let (code, bytes) = raw_bytes(client, method, path, ct, body).await;
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn raw_bytes(
    client: &Client,
    method: &str,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", ct)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, http_body_util_collect(resp).await)
}

async fn http_body_util_collect(resp: http::Response<kube::client::Body>) -> Vec<u8> {
    use http_body::Body as _;
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(f) = frame.unwrap().into_data() {
            out.extend_from_slice(&f);
        }
    }
    out
}

#[tokio::test]
async fn bad_input_gets_status_errors() {
    let c = Cluster::start();
    let cl = c.kube_client().await;
    let pods = "/api/v1/namespaces/default/pods";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "application/json", b"{not json".to_vec(), 400, "BadRequest"),
        ("POST", "application/json", b"[]".to_vec(), 400, "BadRequest"),
        ("POST", "text/plain", b"{}".to_vec(), 415, "UnsupportedMediaType"),
        ("POST", "application/vnd.kubernetes.protobuf", b"k8s\x00\xff\xff".to_vec(), 400, "BadRequest"),
        ("POST", "application/yaml", b"a: [".to_vec(), 400, "BadRequest"),
        ("POST", "application/json", br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"UPPER"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#.to_vec(), 422, "Invalid"),
        ("POST", "application/json", br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("POST", "application/json", vec![b' '; 4 * 1024 * 1024], 413, "RequestEntityTooLarge"),
    ];
    for (method, ct, body, code, reason) in cases {
        let (got, status) = raw(&cl, method, pods, ct, body).await;
        assert_eq!(got, code, "{ct}: {status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], reason, "{status}");
    }
    // The bytes of an error as kube-apiserver writes them (clients compare them as text).
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"}}"#;
    assert_eq!(
        raw(&cl, "POST", cms, "application/json", cm.to_vec())
            .await
            .0,
        201
    );
    let (code, bytes) = raw_bytes(&cl, "POST", cms, "application/json", cm.to_vec()).await;
    assert_eq!(code, 409);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"dup\\\" already exists\",\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"dup\",\"kind\":\"configmaps\"},\"code\":409}\n"
    );
    // New objects come back with the status kube-apiserver gives them.
    let svc = br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"st"},"spec":{"ports":[{"name":"80-80","port":80}]}}"#;
    let (code, created) = raw(
        &cl,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        svc.to_vec(),
    )
    .await;
    assert_eq!(
        (code, &created["status"]),
        (201, &serde_json::json!({"loadBalancer": {}})),
        "{created}"
    );
    let (code, st) = raw(
        &cl,
        "GET",
        "/api/v1/nonexistent",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((code, st["kind"].as_str()), (404, Some("Status")));
    let (code, st) = raw(
        &cl,
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=a%20in%20(",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400, "{st}");
    let (code, st) = raw(
        &cl,
        "GET",
        "/api/v1/namespaces/default/pods?fieldSelector=spec.bogus%3Dx",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400, "{st}");
    let (code, _) = raw(
        &cl,
        "PATCH",
        "/api/v1/namespaces/default/pods/nope",
        "application/merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(code, 404);

    // Anonymous requests are refused.
    let kc = Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.auth_info = Default::default();
    let anon = Client::try_from(cfg).unwrap();
    let pods_api: Api<Pod> = Api::namespaced(anon, "default");
    match pods_api.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 401),
        other => panic!("{other:?}"),
    }
}

/// Objects entering a watch's selectors arrive as ADDED and leaving as DELETED, with
/// label and field selectors together, while an unfiltered watch sees plain changes.
#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let c = Cluster::start_with(&["server", "--disable", "scheduler"]);
    let client = c.kube_client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rv = pods
        .list_metadata(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut filtered = pods
        .watch(
            &WatchParams::default()
                .labels("tier=web")
                .fields("spec.nodeName=n1")
                .timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let mut all = pods
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "w", "labels": {"tier": "web"}}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let other: Pod = serde_json::from_value(json!({"metadata": {"name": "x", "labels": {"tier": "db"}}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})).unwrap();
    pods.create(&PostParams::default(), &other).await.unwrap();
    let relabel = |t: &str| json!({"metadata": {"labels": {"tier": t}}});
    pods.patch("w", &PatchParams::default(), &Patch::Merge(&relabel("db")))
        .await
        .unwrap();
    pods.patch("x", &PatchParams::default(), &Patch::Merge(&relabel("web")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), filtered.try_next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        let (kind, p) = match ev {
            WatchEvent::Added(p) => ("ADDED", p),
            WatchEvent::Modified(p) => ("MODIFIED", p),
            WatchEvent::Deleted(p) => ("DELETED", p),
            other => panic!("unexpected {other:?}"),
        };
        seen.push((
            kind,
            p.metadata.name.unwrap(),
            p.metadata.labels.unwrap()["tier"].clone(),
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("ADDED", "w".to_string(), "web".to_string()),
            // Leaving: the last state that matched.
            ("DELETED", "w".to_string(), "web".to_string()),
            ("ADDED", "x".to_string(), "web".to_string()),
        ]
    );
    let mut plain = Vec::new();
    while plain.len() < 4 {
        match all.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(p) => plain.push(("ADDED", p.metadata.name.unwrap())),
            WatchEvent::Modified(p) => plain.push(("MODIFIED", p.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        plain,
        vec![
            ("ADDED", "w".to_string()),
            ("ADDED", "x".to_string()),
            ("MODIFIED", "w".to_string()),
            ("MODIFIED", "x".to_string()),
        ]
    );
    // Lists with the same selectors, from the cache and consistent, agree.
    for lp in [ListParams::default().match_any(), ListParams::default()] {
        let names: Vec<String> = pods
            .list(&lp.labels("tier=web").fields("spec.nodeName=n1"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert_eq!(names, ["x"]);
    }
}

/// An update that changes nothing writes nothing: same resourceVersion, no watch event
/// (Kubernetes skips such writes); the next real change is seen as usual.
#[tokio::test]
async fn no_op_updates_keep_the_resource_version() {
    let c = Cluster::start_with(&["server", "--disable", "scheduler"]);
    let client = c.kube_client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("same", "1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let again = cms
        .replace("same", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let patched = cms
        .patch(
            "same",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"v": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    cms.patch(
        "same",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    // The first event the watch sees is the real change.
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(o) => assert_eq!(o.data.unwrap()["v"], "2"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Repeated keys in a JSON body: Strict rejects them naming the path (create and
/// update), Warn stores the last value, and a body without repeats is not flagged.
#[tokio::test]
async fn duplicate_json_keys_are_named() {
    let c = Cluster::start_with(&["server", "--disable", "scheduler"]);
    let cl = c.kube_client().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let body = |v: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"dup"}},"data":{{"v":"1","w":"x","v":"{v}"}}}}"#)
            .into_bytes()
    };
    let (code, st) = raw(
        &cl,
        "POST",
        &format!("{cms}?fieldValidation=Strict"),
        "application/json",
        body("2"),
    )
    .await;
    assert_eq!(code, 400, "{st}");
    let msg = st["message"].as_str().unwrap_or_default();
    assert!(msg.contains("duplicate field \"data.v\""), "{msg}");
    let (code, st) = raw(
        &cl,
        "POST",
        &format!("{cms}?fieldValidation=Warn"),
        "application/json",
        body("2"),
    )
    .await;
    assert_eq!(code, 201, "{st}");
    assert_eq!(st["data"]["v"], "2");
    let (code, st) = raw(
        &cl,
        "PUT",
        &format!("{cms}/dup?fieldValidation=Strict"),
        "application/json",
        body("3"),
    )
    .await;
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate field \"data.v\""),
        "{st}"
    );
    let clean =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"v":"4"}}"#
            .to_vec();
    let (code, st) = raw(
        &cl,
        "PUT",
        &format!("{cms}/dup?fieldValidation=Strict"),
        "application/json",
        clean,
    )
    .await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["data"]["v"], "4");
}
