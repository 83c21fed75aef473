//! A custom resource the way a kube-rs operator writes one, against a real `skiff server`:
//! the CustomResourceDefinition comes from `#[derive(CustomResource, KubeSchema)]`
//! (`Counter::crd()`, with CEL rules from `#[x_kube(validation = ...)]`), is installed
//! through `Api<CustomResourceDefinition>` and awaited with `await_condition`; a
//! `kube::runtime::Controller` (behind kube-runtime's `finalizer` helper) keeps each
//! Counter's status in step with its spec through the status subresource, and cleans up
//! before deletion; the scale subresource; CEL rules (plain and transition) refuse with
//! 422; printer columns, defaulting, pruning, OpenAPI v3; watches (raw, `watcher`,
//! streaming-list metadata watcher), label and field selectors, deletion, server-side
//! apply with conflicts.

mod common;

use common::Cluster;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, PartialObjectMeta, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, KubeSchema, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NEGATIVE: &str = "target must not be negative";
const SHRINKS: &str = "target may only grow";

/// A counter a controller "counts up" to: `status.observed` follows `spec.target`.
// Two `printcolumn(...)` share `type_ = "integer"`, which clippy takes for a repeated
// attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug)]
#[kube(
    group = "skiff.test",
    version = "v1",
    kind = "Counter",
    namespaced,
    status = "CounterStatus",
    shortname = "ctr",
    printcolumn(name = "Target", type_ = "integer", json_path = ".spec.target"),
    printcolumn(name = "Observed", type_ = "integer", json_path = ".status.observed"),
    selectable = ".spec.team",
    scale(
        spec_replicas_path = ".spec.target",
        status_replicas_path = ".status.observed"
    )
)]
#[x_kube(validation = Rule::new("self.target >= 0").message(NEGATIVE))]
#[x_kube(validation = Rule::new("self.target >= oldSelf.target").message(SHRINKS))]
#[serde(rename_all = "camelCase")]
pub struct CounterSpec {
    pub target: i64,
    /// Defaulted by the server from the schema when a client leaves it out.
    #[serde(default = "one")]
    pub step: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

fn one() -> i64 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CounterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

const WAIT: Duration = Duration::from_secs(15);

fn counter(name: &str, target: i64) -> Counter {
    Counter::new(
        name,
        CounterSpec {
            target,
            step: 1,
            team: None,
        },
    )
}

/// `c` created with the controller's finalizer already on it: kube-runtime's `finalizer`
/// helper cannot add the first one on skiff today (see `finalizer_helper_adds_first`).
fn finalized(mut c: Counter) -> Counter {
    c.metadata.finalizers = Some(vec![FINALIZER.into()]);
    c
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// Polls `name` until `ok` holds of it (bounded); returns it.
async fn wait_for(api: &Api<Counter>, name: &str, ok: impl Fn(&Counter) -> bool) -> Counter {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = api.get_opt(name).await.unwrap();
        if let Some(c) = &last
            && ok(c)
        {
            return c.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counter {name} never reached the expected state; last: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn synced(c: &Counter) -> bool {
    c.status
        == Some(CounterStatus {
            observed: Some(c.spec.target),
            observed_generation: c.metadata.generation,
        })
}

/// A server with the Counter CRD installed from `Counter::crd()` and Established.
async fn cluster_with_crd() -> (Cluster, Client) {
    let c = Cluster::start();
    let client = c.kube_client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Counter::crd();
    let name = crd.metadata.name.clone().unwrap();
    assert_eq!(name, "counters.skiff.test");
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = bounded(
        "the CRD to be Established",
        await_condition(crds.clone(), &name, conditions::is_crd_established()),
    )
    .await
    .unwrap()
    .unwrap();
    let conds = established.status.unwrap().conditions.unwrap();
    for ty in ["NamesAccepted", "Established"] {
        assert!(
            conds.iter().any(|c| c.type_ == ty && c.status == "True"),
            "{ty} not True: {conds:?}"
        );
    }
    (c, client)
}

const FINALIZER: &str = "skiff.test/cleanup";

/// The reconciler, behind kube-runtime's `finalizer` helper (JSON patches with `test`
/// operations on `metadata.finalizers`): on apply, `status.observed = spec.target`,
/// `status.observedGeneration = metadata.generation`, through the status subresource
/// (merge patch); on deletion, note the name, then let the helper drop the finalizer.
async fn reconcile(
    obj: Arc<Counter>,
    ctx: Arc<Ctx>,
) -> Result<Action, finalizer::Error<kube::Error>> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let api: Api<Counter> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap());
    finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            finalizer::Event::Apply(obj) => apply(&api, &obj).await,
            finalizer::Event::Cleanup(obj) => {
                ctx.cleaned.lock().unwrap().push(obj.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
}

async fn apply(api: &Api<Counter>, obj: &Counter) -> Result<Action, kube::Error> {
    if !synced(obj) {
        let status = json!({"status": {
            "observed": obj.spec.target,
            "observedGeneration": obj.metadata.generation,
        }});
        api.patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    }
    Ok(Action::await_change())
}

struct Ctx {
    client: Client,
    reconciles: AtomicUsize,
    cleaned: Mutex<Vec<String>>,
}

struct RunningController {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    ctx: Arc<Ctx>,
}

fn start_controller(client: &Client) -> RunningController {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
        cleaned: Mutex::new(Vec::new()),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::new(
        Api::<Counter>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(stopped.map(|_| ()))
    .run(
        reconcile,
        |_, err, _| {
            eprintln!("reconcile failed: {err}");
            Action::requeue(Duration::from_millis(200))
        },
        ctx.clone(),
    )
    .for_each(|res| async move {
        if let Err(e) = res {
            eprintln!("controller: {e}");
        }
    });
    RunningController {
        stop,
        task: tokio::spawn(controller),
        ctx,
    }
}

impl RunningController {
    async fn stop(self) -> usize {
        let _ = self.stop.send(());
        bounded("the controller to stop", self.task).await.unwrap();
        self.ctx.reconciles.load(Ordering::SeqCst)
    }
}

/// Discovery, short name, printer columns, the schema as the server stores it.
#[tokio::test]
async fn crd_from_derive_is_served() {
    let (_c, client) = cluster_with_crd().await;

    let list: Value = client
        .request(
            http::Request::get("/apis/skiff.test/v1")
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    let res = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "counters")
        .unwrap_or_else(|| panic!("counters not in discovery: {list}"));
    assert_eq!(res["kind"], "Counter");
    assert_eq!(res["namespaced"], true);
    assert_eq!(res["shortNames"], json!(["ctr"]));
    assert!(
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "counters/status"),
        "no counters/status in {list}"
    );

    let discovery = kube::Discovery::new(client.clone())
        .filter(&["skiff.test"])
        .run()
        .await
        .unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "skiff.test",
            "v1",
            "Counter",
        ))
        .expect("Counter discovered");
    assert_eq!(ar, ApiResource::erase::<Counter>(&()));
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    let api: Api<Counter> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &counter("shown", 7))
        .await
        .unwrap();
    let table: Value = client
        .request(
            http::Request::get("/apis/skiff.test/v1/namespaces/default/counters")
                .header(
                    http::header::ACCEPT,
                    "application/json;as=Table;v=v1;g=meta.k8s.io",
                )
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table", "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Target", "Observed"], "{table}");
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "shown");
    assert_eq!(cells[1], 7);

    // OpenAPI v3 for the group-version, with the derived schema.
    let index: Value = client
        .request(http::Request::get("/openapi/v3").body(vec![]).unwrap())
        .await
        .unwrap();
    assert!(
        index["paths"].get("apis/skiff.test/v1").is_some(),
        "{index}"
    );
    let doc: Value = client
        .request(
            http::Request::get("/openapi/v3/apis/skiff.test/v1")
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    let schema = &doc["components"]["schemas"]["test.skiff.v1.Counter"];
    assert_eq!(
        schema["properties"]["spec"]["properties"]["target"]["type"], "integer",
        "{doc}"
    );
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([{"group": "skiff.test", "version": "v1", "kind": "Counter"}])
    );

    // Server-side defaulting and pruning from the derived structural schema: a client
    // that leaves `step` out gets the schema's default, an unknown field is dropped.
    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<Counter>(&()),
    );
    let raw: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "skiff.test/v1",
        "kind": "Counter",
        "metadata": {"name": "raw"},
        "spec": {"target": 2, "bogus": true},
    }))
    .unwrap();
    let made = dynamic.create(&PostParams::default(), &raw).await.unwrap();
    assert_eq!(made.data["spec"], json!({"target": 2, "step": 1}));
}

/// A `Controller` reconciles status from spec; generation follows spec only; the status
/// subresource splits who may write what.
#[tokio::test]
async fn controller_keeps_status_in_step() {
    let (_c, client) = cluster_with_crd().await;
    let api: Api<Counter> = Api::namespaced(client.clone(), "default");
    let controller = start_controller(&client);

    let created = api
        .create(&PostParams::default(), &finalized(counter("c1", 3)))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.status, None, "create must not set status");
    let c1 = wait_for(&api, "c1", synced).await;
    assert_eq!(c1.status.as_ref().unwrap().observed, Some(3));
    assert_eq!(c1.status.as_ref().unwrap().observed_generation, Some(1));
    // Writing status did not bump the generation.
    assert_eq!(c1.metadata.generation, Some(1));

    // A spec change bumps the generation, and status follows.
    let patched = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"target": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    let c1 = wait_for(&api, "c1", |c| {
        synced(c) && c.status.as_ref().unwrap().observed == Some(5)
    })
    .await;
    assert_eq!(c1.status.unwrap().observed_generation, Some(2));

    // Replace (PUT) the whole object with a new spec: generation 3, status follows.
    let mut whole = api.get("c1").await.unwrap();
    whole.spec.target = 6;
    let replaced = api
        .replace("c1", &PostParams::default(), &whole)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(3));
    let settled = wait_for(&api, "c1", |c| {
        synced(c) && c.status.as_ref().unwrap().observed == Some(6)
    })
    .await;
    let before = settled.status.clone();

    // The main resource ignores status: spec changes, status stays.
    let patched = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"target": 8}, "status": {"observed": 999}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.target, 8);
    assert_eq!(patched.status, before, "main resource changed status");
    assert_eq!(patched.metadata.generation, Some(4));
    let settled = wait_for(&api, "c1", |c| {
        synced(c) && c.status.as_ref().unwrap().observed == Some(8)
    })
    .await;

    // A status-only patch of the main resource changes nothing at all.
    let noop = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"observed": 999}})),
        )
        .await
        .unwrap();
    assert_eq!(noop.status, settled.status);
    assert_eq!(noop.metadata.generation, settled.metadata.generation);
    assert_eq!(
        noop.resource_version(),
        settled.resource_version(),
        "a no-op patch wrote a new resourceVersion"
    );

    // Optimistic concurrency: a replace from a stale copy is a 409.
    let mut stale = patched.clone();
    stale.spec.target = 50;
    let err = api_error(
        api.replace("c1", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409, "{err:?}");
    assert_eq!(err.reason, "Conflict", "{err:?}");

    // The status subresource ignores spec: status changes, spec and generation stay.
    let gen_before = settled.metadata.generation;
    let st = api
        .patch_status(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"target": 100}, "status": {"observed": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.spec.target, 8, "status subresource changed spec");
    assert_eq!(st.status.as_ref().unwrap().observed, Some(1));
    assert_eq!(st.metadata.generation, gen_before);
    // ... and the controller, seeing status out of step, puts it back.
    wait_for(&api, "c1", |c| {
        synced(c) && c.status.as_ref().unwrap().observed == Some(8)
    })
    .await;
    // get_status reads the same object through the subresource.
    let through_status = api.get_status("c1").await.unwrap();
    assert_eq!(through_status.spec.target, 8);
    assert_eq!(through_status.status.unwrap().observed, Some(8));

    // A second counter, in another namespace, is reconciled too.
    let other: Api<Counter> = Api::namespaced(client.clone(), "kube-system");
    other
        .create(&PostParams::default(), &finalized(counter("c2", 11)))
        .await
        .unwrap();
    wait_for(&other, "c2", |c| {
        synced(c) && c.status.as_ref().unwrap().observed == Some(11)
    })
    .await;

    // The controller's finalizer is on every counter it saw.
    let c1 = api.get("c1").await.unwrap();
    assert_eq!(c1.finalizers(), [FINALIZER]);

    // The scale subresource maps spec.replicas to spec.target and status.replicas to
    // status.observed; scaling up is a spec change the controller follows, scaling down
    // is refused by the transition rule as any other update.
    let scale = api.get_scale("c1").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(8));
    assert_eq!(scale.status.unwrap().replicas, 8);
    let scaled = api
        .patch_scale(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 10}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(10));
    let c1 = wait_for(&api, "c1", |c| {
        synced(c) && c.status.as_ref().unwrap().observed == Some(10)
    })
    .await;
    assert_eq!(c1.spec.target, 10);
    assert_eq!(c1.metadata.generation, Some(5));
    assert_eq!(
        api.get_scale("c1").await.unwrap().status.unwrap().replicas,
        10
    );
    let err = api_error(
        api.patch_scale(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains(SHRINKS), "{err:?}");
    assert_eq!(api.get("c1").await.unwrap().spec.target, 10);

    // Deleting: the finalizer holds the object (deletionTimestamp set) until the
    // controller's cleanup has run and removed it; then it is gone.
    let deleting = api.delete("c1", &DeleteParams::default()).await.unwrap();
    let deleting = deleting.left().expect("held by the finalizer");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt("c1").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "c1 never went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*controller.ctx.cleaned.lock().unwrap(), ["c1"]);

    let reconciles = controller.stop().await;
    assert!(reconciles >= 6, "only {reconciles} reconciles");
}

/// `#[x_kube(validation = ...)]` rules: a plain rule on create, a transition rule on
/// update; each refusal next to the accepted case.
#[tokio::test]
async fn cel_rules_from_derive() {
    let (_c, client) = cluster_with_crd().await;
    let api: Api<Counter> = Api::namespaced(client.clone(), "default");

    // The rules are in the stored CRD, on the spec.
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("counters.skiff.test")
        .await
        .unwrap();
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let rules = &schema["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"];
    assert_eq!(
        rules,
        &json!([
            {"rule": "self.target >= 0", "message": NEGATIVE},
            {"rule": "self.target >= oldSelf.target", "message": SHRINKS},
        ])
    );

    // Create: -1 refused, 0 accepted.
    let err = api_error(
        api.create(&PostParams::default(), &counter("neg", -1))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert_eq!(err.reason, "Invalid", "{err:?}");
    assert_eq!(
        err.message,
        format!(
            r#"Counter.skiff.test "neg" is invalid: spec: Invalid value: "object": {NEGATIVE}"#
        )
    );
    assert!(api.get_opt("neg").await.unwrap().is_none());
    // Dry run: validated the same, stored neither way.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let err = api_error(api.create(&dry, &counter("dry", -1)).await.unwrap_err());
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains(NEGATIVE), "{err:?}");
    let would = api.create(&dry, &counter("dry", 4)).await.unwrap();
    assert_eq!(would.spec.target, 4);
    assert!(api.get_opt("dry").await.unwrap().is_none());
    let zero = api
        .create(&PostParams::default(), &counter("zero", 0))
        .await
        .unwrap();
    assert_eq!(zero.spec.target, 0);

    // Update: shrinking refused by the transition rule, growing accepted.
    api.create(&PostParams::default(), &counter("grow", 5))
        .await
        .unwrap();
    let err = api_error(
        api.patch(
            "grow",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"target": 3}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains(SHRINKS), "{err:?}");
    assert!(!err.message.contains(NEGATIVE), "{err:?}");
    assert_eq!(api.get("grow").await.unwrap().spec.target, 5);
    let grown = api
        .patch(
            "grow",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"target": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(grown.spec.target, 7);
    // Equal is fine too (>=), and a replace (PUT) is held to the same rule.
    let mut same = grown.clone();
    same.metadata.managed_fields = None;
    let same = api
        .replace("grow", &PostParams::default(), &same)
        .await
        .unwrap();
    assert_eq!(same.spec.target, 7);
    let mut smaller = same.clone();
    smaller.spec.target = 6;
    let err = api_error(
        api.replace("grow", &PostParams::default(), &smaller)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains(SHRINKS), "{err:?}");

    // Both rules at once: -1 on update breaks both, both reported.
    let err = api_error(
        api.patch(
            "grow",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"target": -1}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert_eq!(
        err.message,
        format!(
            r#"Counter.skiff.test "grow" is invalid: [spec: Invalid value: "object": {NEGATIVE}, spec: Invalid value: "object": {SHRINKS}]"#
        )
    );

    // Status writes do not run the spec's transition rule against a spec they keep.
    let st = api
        .patch_status(
            "grow",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"observed": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().observed, Some(7));
}

/// `watcher` and a raw watch see ADDED/MODIFIED/DELETED; label and field selectors;
/// delete.
#[tokio::test]
async fn watch_select_delete() {
    let (_c, client) = cluster_with_crd().await;
    let api: Api<Counter> = Api::namespaced(client.clone(), "default");

    // A raw watch from the (empty) list's resourceVersion, and a runtime watcher over a
    // label selector, both started before anything exists.
    let rv = api
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut raw = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let mut events = watcher(
        api.clone(),
        watcher::Config::default().labels("app=counted"),
    )
    .boxed();
    let mut meta = watcher(
        Api::<PartialObjectMeta<Counter>>::namespaced(client.clone(), "default"),
        watcher::Config::default().streaming_lists(),
    )
    .boxed();
    bounded("the streaming metadata watcher's initial events", async {
        loop {
            match meta.try_next().await.unwrap().unwrap() {
                watcher::Event::InitDone => break,
                watcher::Event::Init => {}
                other => panic!("nothing should exist yet: {other:?}"),
            }
        }
    })
    .await;
    bounded("the watcher's initial list", async {
        loop {
            match events.try_next().await.unwrap().unwrap() {
                watcher::Event::InitDone => break,
                watcher::Event::Init => {}
                other => panic!("nothing should exist yet: {other:?}"),
            }
        }
    })
    .await;

    let mut labelled = counter("a", 1);
    labelled.metadata.labels = Some(BTreeMap::from([("app".into(), "counted".into())]));
    labelled.spec.team = Some("red".into());
    api.create(&PostParams::default(), &labelled).await.unwrap();
    let mut unlabelled = counter("b", 2);
    unlabelled.spec.team = Some("blue".into());
    api.create(&PostParams::default(), &unlabelled)
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"target": 4}})),
    )
    .await
    .unwrap();

    // The watcher (label selector) sees a, then a modified, never b.
    let seen = bounded("the watcher to see a created and modified", async {
        let mut seen = Vec::new();
        while seen.last() != Some(&4) {
            match events.try_next().await.unwrap().unwrap() {
                watcher::Event::Apply(o) => {
                    assert_eq!(o.name_any(), "a", "label selector let {o:?} through");
                    seen.push(o.spec.target);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        seen
    })
    .await;
    assert_eq!(seen, [1, 4]);

    // Lists by label and by field (selectableFields: .spec.team).
    let names = |l: kube::core::ObjectList<Counter>| -> Vec<String> {
        l.items.iter().map(|o| o.name_any()).collect()
    };
    assert_eq!(
        names(api.list(&ListParams::default()).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=counted"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app!=counted"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("spec.team=blue"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let err = api_error(
        api.list(&ListParams::default().fields("spec.target=4"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400, "{err:?}");

    // Delete: present first, then gone (404), and the watches see it go.
    assert_eq!(api.get("a").await.unwrap().spec.target, 4);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api_error(api.get("a").await.unwrap_err());
    assert_eq!(err.code, 404, "{err:?}");
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert_eq!(
        names(api.list(&ListParams::default()).await.unwrap()),
        ["b"]
    );
    bounded("the watcher to see a deleted", async {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Delete(o) => assert_eq!(o.name_any(), "a"),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;

    // The metadata watcher (streaming list, PartialObjectMetadata) saw a, b, a, a gone.
    let seen = bounded("the metadata watcher to see a deleted", async {
        let mut seen = Vec::new();
        loop {
            match meta.try_next().await.unwrap().unwrap() {
                watcher::Event::Apply(o) => seen.push(format!("apply {}", o.name_any())),
                watcher::Event::Delete(o) => {
                    seen.push(format!("delete {}", o.name_any()));
                    break seen;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(seen, ["apply a", "apply b", "apply a", "delete a"]);
    let metas = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items.len(), 1);
    assert_eq!(metas.items[0].name_any(), "b");
    assert_eq!(
        metas.items[0].types.as_ref().unwrap().kind,
        "PartialObjectMetadata"
    );

    // The raw watch: ADDED a, ADDED b, MODIFIED a, DELETED a, in that order.
    let kinds = bounded("the raw watch's four events", async {
        let mut kinds = Vec::new();
        while kinds.len() < 4 {
            let ev = match raw.try_next().await.unwrap().unwrap() {
                WatchEvent::Added(o) => ("ADDED", o.name_any(), o.spec.target),
                WatchEvent::Modified(o) => ("MODIFIED", o.name_any(), o.spec.target),
                WatchEvent::Deleted(o) => ("DELETED", o.name_any(), o.spec.target),
                other => panic!("unexpected {other:?}"),
            };
            kinds.push(ev);
        }
        kinds
    })
    .await;
    let kinds: Vec<(&str, &str, i64)> =
        kinds.iter().map(|(k, n, t)| (*k, n.as_str(), *t)).collect();
    assert_eq!(
        kinds,
        [
            ("ADDED", "a", 1),
            ("ADDED", "b", 2),
            ("MODIFIED", "a", 4),
            ("DELETED", "a", 4),
        ]
    );

    // delete_collection by label selector takes b and leaves nothing.
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app!=counted"),
    )
    .await
    .unwrap();
    assert!(api.get_opt("b").await.unwrap().is_none());
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Server-side apply of a Counter: two field managers, a conflict (409) unless forced.
#[tokio::test]
async fn server_side_apply_conflicts() {
    let (_c, client) = cluster_with_crd().await;
    let api: Api<Counter> = Api::namespaced(client.clone(), "default");
    let applied = |target: i64| {
        json!({
            "apiVersion": Counter::api_version(&()),
            "kind": Counter::kind(&()),
            "metadata": {"name": "ssa"},
            "spec": {"target": target},
        })
    };

    let a = api
        .patch(
            "ssa",
            &PatchParams::apply("alice"),
            &Patch::Apply(&applied(5)),
        )
        .await
        .unwrap();
    assert_eq!(a.spec.target, 5);
    assert_eq!(a.spec.step, 1, "schema default on apply");
    let managers = |c: &Counter| -> Vec<String> {
        c.managed_fields()
            .iter()
            .filter_map(|m| m.manager.clone())
            .collect()
    };
    assert_eq!(managers(&a), ["alice"]);

    // Re-applying the same manager's intent is fine.
    let again = api
        .patch(
            "ssa",
            &PatchParams::apply("alice"),
            &Patch::Apply(&applied(6)),
        )
        .await
        .unwrap();
    assert_eq!(again.spec.target, 6);

    // bob wants spec.target too: 409 naming alice, object unchanged.
    let err = api_error(
        api.patch(
            "ssa",
            &PatchParams::apply("bob"),
            &Patch::Apply(&applied(9)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409, "{err:?}");
    assert_eq!(err.reason, "Conflict", "{err:?}");
    assert!(
        err.message.contains("alice") && err.message.contains(".spec.target"),
        "{err:?}"
    );
    assert_eq!(api.get("ssa").await.unwrap().spec.target, 6);

    // Forced, bob takes the field over.
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&applied(9)),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.target, 9);
    assert!(managers(&forced).contains(&"bob".to_string()));

    // The CEL transition rule holds for apply too, even forced.
    let err = api_error(
        api.patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&applied(2)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert!(err.message.contains(SHRINKS), "{err:?}");

    // Apply through the status subresource with a manager of its own.
    let st = api
        .patch_status(
            "ssa",
            &PatchParams::apply("counter-controller"),
            &Patch::Apply(&json!({
                "apiVersion": "skiff.test/v1",
                "kind": "Counter",
                "metadata": {"name": "ssa"},
                "status": {"observed": 9},
            })),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().observed, Some(9));
    assert_eq!(st.spec.target, 9);
}

/// kube-runtime's `finalizer` helper adds the first finalizer with a JSON patch
/// `[{"op":"test","path":"/metadata/finalizers","value":null}, {"op":"add",...}]`.
/// Kubernetes (evanphx/json-patch) passes a `test` of an absent member against `null`;
/// a strict RFC 6902 patch would answer 400, and every kube-rs controller using
/// `finalizer()` on objects created without it would loop on "failed to add finalizer".
#[tokio::test]
async fn finalizer_helper_adds_first() {
    let (_c, client) = cluster_with_crd().await;
    let api: Api<Counter> = Api::namespaced(client.clone(), "default");

    // The patch itself, as the helper sends it.
    api.create(&PostParams::default(), &counter("raw", 1))
        .await
        .unwrap();
    let patch = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
    ]);
    let patched = api
        .patch(
            "raw",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(patch).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(patched.finalizers(), [FINALIZER]);
    // A `test` against null of a member that is there still fails.
    let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
    let err = api_error(
        api.patch(
            "raw",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(patch).unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{err:?}");

    // The whole controller on a counter created without the finalizer.
    let controller = start_controller(&client);
    api.create(&PostParams::default(), &counter("plain", 2))
        .await
        .unwrap();
    let plain = wait_for(&api, "plain", synced).await;
    assert_eq!(plain.finalizers(), [FINALIZER]);
    api.delete("plain", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt("plain").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "plain never went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        controller
            .ctx
            .cleaned
            .lock()
            .unwrap()
            .contains(&"plain".to_string())
    );
    controller.stop().await;
}

/// A POST of `body` as `content_type` to `path`; the Status kube-rs gets back.
async fn post_raw(client: &Client, path: &str, content_type: &str, body: &[u8]) -> kube::Error {
    let req = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.to_vec())
        .unwrap();
    client.request_text(req).await.unwrap_err()
}

/// Custom kinds have no protobuf form: kube answers 415 listing the media types they
/// take; a built-in kind takes protobuf (a malformed body is a 400, not a 415).
#[tokio::test]
async fn custom_kinds_refuse_protobuf_bodies() {
    let (_c, client) = cluster_with_crd().await;
    let garbage = b"k8s\x00\x0a\x02\x0a\x00";
    let status = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not a Status: {other}"),
    };
    let (code, message) = status(
        post_raw(
            &client,
            "/api/v1/namespaces/default/configmaps",
            "application/vnd.kubernetes.protobuf",
            garbage,
        )
        .await,
    );
    assert_eq!(code, 400, "{message}");
    let custom = "/apis/skiff.test/v1/namespaces/default/counters";
    let (code, message) = status(
        post_raw(
            &client,
            custom,
            "application/vnd.kubernetes.protobuf",
            garbage,
        )
        .await,
    );
    assert_eq!(code, 415, "{message}");
    assert_eq!(
        message,
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
    );
    let (code, message) = status(post_raw(&client, custom, "text/plain", b"{}").await);
    assert_eq!(
        (
            code,
            message.ends_with("application/json, application/yaml")
        ),
        (415, true),
        "{message}"
    );
}
