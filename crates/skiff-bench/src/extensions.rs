//! `skiff bench extensions`: what API extensions cost, side by side in one run.
//! - Custom-object creates against ConfigMap creates on the same connections, the CRD
//!   carrying a schema of about 1,000 lines (YAML) and two CEL rules (goal ≥ 90 %).
//! - A validating admission webhook (HTTPS on loopback, allowing everything): p50 of
//!   sequential ConfigMap creates in a namespace it watches against one it does not
//!   (goal ≤ 1 ms added).

use crate::{Throughput, client_for, cpu_seconds, h2_connections, requests_h2, start_server_with};
use base64::Engine;
use http_body_util::Full;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct ExtensionsBenchOptions {
    pub skiff: PathBuf,
    pub creates: usize,
    pub concurrency: usize,
}

type Conns = Vec<hyper::client::conn::http2::SendRequest<Full<bytes::Bytes>>>;

pub async fn extensions(opts: ExtensionsBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench extensions: {} creates of each, {} concurrent",
        opts.creates, opts.concurrency
    );
    let (server, _) = start_server_with(&opts.skiff, &["--disable", "all"]).await?;
    let client = client_for(&server.kubeconfig).await?;
    let conns = h2_connections(&server.kubeconfig, server.port, 2).await?;
    custom_objects(&client, &conns, &opts, server.child.id()).await?;
    webhook(&client, &conns, &opts).await?;
    Ok(())
}

/// A CRD whose schema is about `lines` lines of YAML: many documented fields of every
/// type, nested, as real operators' CRDs are.
pub(crate) fn big_crd() -> Value {
    let mut props = serde_json::Map::new();
    for i in 0..60 {
        let sub: serde_json::Map<String, Value> = (0..3)
            .map(|j| {
                (
                    format!("field{j}"),
                    json!({"type": "string", "description": format!("Field {j} of group {i}: a documented string, as controller-gen writes descriptions."), "maxLength": 253}),
                )
            })
            .collect();
        props.insert(
            format!("group{i}"),
            json!({"type": "object", "description": format!("Settings group {i}."), "properties": sub}),
        );
    }
    props.insert(
        "replicas".into(),
        json!({"type": "integer", "minimum": 0, "maximum": 1000}),
    );
    props.insert(
        "minReplicas".into(),
        json!({"type": "integer", "default": 1}),
    );
    props.insert(
        "mode".into(),
        json!({"type": "string", "enum": ["Fast", "Safe"]}),
    );
    let spec = json!({
        "type": "object",
        "properties": props,
        "x-kubernetes-validations": [
            {"rule": "self.replicas >= self.minReplicas", "message": "replicas below minReplicas"},
            {"rule": "!has(self.group0) || !has(self.group0.field0) || self.group0.field0.size() < 100", "message": "group0.field0 too long"},
        ],
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.bench.skiff.io"},
        "spec": {"group": "bench.skiff.io", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}}}]},
    })
}

fn yaml_lines(v: &Value) -> usize {
    serde_yaml_ng::to_string(v).map_or(0, |s| s.lines().count())
}

async fn custom_objects(
    client: &kube::Client,
    conns: &Conns,
    opts: &ExtensionsBenchOptions,
    server_pid: u32,
) -> anyhow::Result<()> {
    let crd = big_crd();
    let lines = yaml_lines(&crd["spec"]["versions"][0]["schema"]);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &serde_json::from_value(crd)?)
        .await?;
    wait_established(client).await?;
    let data: serde_json::Map<String, Value> = (0..6)
        .map(|i| (format!("key{i}"), json!(format!("value-{i}-abcdefgh"))))
        .collect();
    let cm = move |i: usize| {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}, "data": data});
        post("/api/v1/namespaces/default/configmaps", &body)
    };
    let widget = |i: usize| {
        let body = json!({"apiVersion": "bench.skiff.io/v1", "kind": "Widget", "metadata": {"name": format!("w-{i}")},
            "spec": {"replicas": 3, "mode": "Fast", "group0": {"field0": "a", "field1": "b"}, "group1": {"field2": "c"}}});
        post("/apis/bench.skiff.io/v1/namespaces/default/widgets", &body)
    };
    requests_h2(
        conns,
        opts.concurrency * 4,
        opts.concurrency,
        http::StatusCode::CREATED,
        move |i| widget(i + 1_000_000),
    )
    .await?;
    // Alternating rounds, so the store's growth weighs on both alike.
    let (rounds, c) = (4, opts.concurrency);
    let n = opts.creates / rounds;
    let (mut cm_rates, mut w_rates) = (Vec::new(), Vec::new());
    let (mut cm_cpu, mut w_cpu) = (0.0, 0.0);
    let (mut cms, mut ws) = (None, None);
    for r in 0..rounds {
        let cm = cm.clone();
        let base = r * n;
        let cpu0 = cpu_seconds(server_pid);
        let a = requests_h2(
            conns,
            n,
            c,
            http::StatusCode::CREATED,
            move |i| cm(base + i),
        )
        .await?;
        let cpu1 = cpu_seconds(server_pid);
        let b = requests_h2(conns, n, c, http::StatusCode::CREATED, move |i| {
            widget(base + i)
        })
        .await?;
        cm_cpu += cpu1 - cpu0;
        w_cpu += cpu_seconds(server_pid) - cpu1;
        cm_rates.push(a.per_sec);
        w_rates.push(b.per_sec);
        (cms, ws) = (Some(a), Some(b));
    }
    let (cms, ws) = (cms.expect("rounds"), ws.expect("rounds"));
    let total = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (cm_rate, w_rate) = (total(&cm_rates), total(&w_rates));
    println!(
        "\ncustom objects (CRD schema {lines} lines of YAML, 2 CEL rules; {rounds} alternating rounds, last shown):"
    );
    row("ConfigMap creates", &cms);
    row("custom-object creates", &ws);
    println!(
        "  mean rate: ConfigMaps {cm_rate:.0}/s, custom objects {w_rate:.0}/s: {:.0} % (goal >= 90 %)",
        100.0 * w_rate / cm_rate
    );
    let each: Vec<String> = (cm_rates.iter().zip(&w_rates))
        .map(|(c, w)| format!("{:.0} %", 100.0 * w / c))
        .collect();
    println!("  each round: {}", each.join(", "));
    let per = |cpu: f64| cpu / (n * rounds) as f64 * 1e6;
    println!(
        "  server CPU per create: ConfigMap {:.0} µs, custom object {:.0} µs",
        per(cm_cpu),
        per(w_cpu)
    );
    Ok(())
}

fn row(what: &str, t: &Throughput) {
    println!(
        "  {what:<24} {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        t.per_sec,
        t.p50.as_secs_f64() * 1e3,
        t.p99.as_secs_f64() * 1e3
    );
}

fn post(path: &str, body: &Value) -> http::Result<http::Request<Full<bytes::Bytes>>> {
    http::Request::post(format!("https://127.0.0.1{path}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
}

async fn wait_established(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let c = crds.get("widgets.bench.skiff.io").await?;
        let ok = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        // Discovery follows the registry; one more beat for the route.
        if ok {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the bench CRD never became Established")
}

async fn webhook(
    client: &kube::Client,
    conns: &Conns,
    opts: &ExtensionsBenchOptions,
) -> anyhow::Result<()> {
    let hook = crate::webhookserver::AllowAll::start().await?;
    for ns in ["hooked", "plain"] {
        let nss: Api<DynamicObject> = Api::all_with(client.clone(), &ns_resource());
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"bench": ns}}});
        nss.create(&PostParams::default(), &serde_json::from_value(obj)?)
            .await?;
    }
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bench"},
        "webhooks": [{"name": "allow.bench.skiff.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": format!("https://127.0.0.1:{}/validate", hook.port),
                             "caBundle": base64::engine::general_purpose::STANDARD.encode(&hook.ca_pem)},
            "namespaceSelector": {"matchLabels": {"bench": "hooked"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}]}],
    });
    let path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
    requests_h2(conns, 1, 1, http::StatusCode::CREATED, move |_| {
        post(path, &config)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = opts.creates.min(2000);
    let create_in = |ns: &'static str| {
        move |i: usize| {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{ns}-{i}")}, "data": {"k": "v"}});
            post(&format!("/api/v1/namespaces/{ns}/configmaps"), &body)
        }
    };
    // Warm both paths, then alternate rounds so drift affects both alike.
    requests_h2(conns, 50, 1, http::StatusCode::CREATED, move |i| {
        create_in("hooked")(i + 900_000)
    })
    .await?;
    let (mut hooked, mut plain) = (Vec::new(), Vec::new());
    for round in 0..4 {
        let base = round * n;
        let p = requests_h2(conns, n / 4, 1, http::StatusCode::CREATED, move |i| {
            create_in("plain")(base + i)
        })
        .await?;
        let h = requests_h2(conns, n / 4, 1, http::StatusCode::CREATED, move |i| {
            create_in("hooked")(base + i)
        })
        .await?;
        plain.push(p.p50);
        hooked.push(h.p50);
    }
    let calls = hook.calls.load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(
        calls >= n,
        "the webhook saw {calls} calls, expected at least {n}"
    );
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (h, p) = (med(&mut hooked), med(&mut plain));
    println!("\nvalidating webhook (HTTPS on loopback, sequential creates, {calls} calls):");
    println!("  without webhook   p50 {:>6.3} ms", p.as_secs_f64() * 1e3);
    println!("  with webhook      p50 {:>6.3} ms", h.as_secs_f64() * 1e3);
    println!(
        "  added per request p50 {:>6.3} ms (goal <= 1 ms)",
        (h.as_secs_f64() - p.as_secs_f64()) * 1e3
    );
    drop(hook);
    Ok(())
}

fn ns_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Namespace".into(),
        plural: "namespaces".into(),
    }
}
