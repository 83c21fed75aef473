//! The pods a Job makes from its template.

use super::{INDEX, KIND, TRACKING};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The pod a Job makes, for `index` in an Indexed job: tracked by the Job's finalizer,
/// and for an index, labelled and annotated with it, named after it, and told it in
/// `JOB_COMPLETION_INDEX`.
pub fn pod_from_template(job: &Job, index: Option<i64>) -> Pod {
    let name = job.metadata.name.as_deref().unwrap_or("");
    let template = job.spec.as_ref().map(|s| s.template.clone());
    let template = template.unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let (mut labels, mut annotations) = (meta.labels, meta.annotations);
    let mut spec = template.spec.unwrap_or_default();
    if let Some(ix) = index {
        labels
            .get_or_insert_default()
            .insert(INDEX.into(), ix.to_string());
        annotations
            .get_or_insert_default()
            .insert(INDEX.into(), ix.to_string());
        spec.hostname.get_or_insert_with(|| format!("{name}-{ix}"));
        let inits = spec.init_containers.iter_mut().flatten();
        for c in inits.chain(spec.containers.iter_mut()) {
            add_index_env(c);
        }
    }
    let generate_name = match index {
        Some(ix) => format!("{name}-{ix}-"),
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels,
            annotations,
            owner_references: Some(vec![KIND.controller_ref(&job.metadata)]),
            finalizers: Some(vec![TRACKING.into()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn add_index_env(c: &mut Container) {
    const VAR: &str = "JOB_COMPLETION_INDEX";
    let env = c.env.get_or_insert_default();
    if env.iter().any(|e| e.name == VAR) {
        return;
    }
    env.push(EnvVar {
        name: VAR.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{INDEX}']"),
            }),
            ..Default::default()
        }),
    });
}
