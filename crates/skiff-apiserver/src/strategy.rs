//! Per-kind rules of the generic object pipeline (kube's registry strategies):
//! decoding checks, defaults, validation, unknown fields, tables, and how server-side
//! apply merges lists and maps. Built-in kinds keep
//! theirs in the pure crates, looked up by (group, resource); kinds a
//! CustomResourceDefinition defines carry theirs in [`crate::custom::CustomVersion`];
//! CRDs themselves are checked by `skiff_crd`. The pipeline asks here and never
//! branches on where a kind came from.

use crate::registry::Served;
use chrono::{DateTime, Utc};
use serde_json::Value;
use skiff_types::{FieldError, Subresource};

fn is_crd(ri: &Served) -> bool {
    ri.group == "apiextensions.k8s.io" && ri.plural == "customresourcedefinitions"
}

/// Rules of the API-extension kinds whose checks live in their own crates (CRDs,
/// admission configurations); None for every other kind.
fn extension_rules(ri: &Served, obj: &Value, old: Option<&Value>) -> Option<Vec<FieldError>> {
    let own = match (&*ri.group, &*ri.plural) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => skiff_crd::validate_crd(obj, old),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => {
            skiff_admission::validate_configuration(obj, true)
        }
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            skiff_admission::validate_configuration(obj, false)
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            skiff_admission::validate_policy(obj)
        }
        ("apiregistration.k8s.io", "apiservices") => apiservice_rules(obj),
        _ => return None,
    };
    let mut errs = skiff_validation::validate_object_meta(&ri.group, &ri.plural, obj, false);
    errs.extend(own);
    Some(errs)
}

/// kube-aggregator's: an APIService is named `<version>.<group>` (`v1.` for the core
/// group), and names a version.
fn apiservice_rules(obj: &Value) -> Vec<FieldError> {
    let spec = &obj["spec"];
    let (version, group) = (
        spec["version"].as_str().unwrap_or(""),
        spec["group"].as_str().unwrap_or(""),
    );
    let mut errs = Vec::new();
    if version.is_empty() {
        errs.push(FieldError::required("spec.version", ""));
    }
    let want = format!("{version}.{group}");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if !version.is_empty() && name != want {
        errs.push(FieldError::invalid(
            "metadata.name",
            Value::String(name.into()),
            format!("must be {want}"),
        ));
    }
    let ca = spec["caBundle"].as_str().is_some_and(|c| !c.is_empty());
    if spec["insecureSkipTLSVerify"] == true && ca {
        errs.push(FieldError::invalid(
            "spec.insecureSkipTLSVerify",
            Value::Bool(true),
            "may not be true if caBundle is present",
        ));
    }
    errs
}

/// The `type_mismatch` a typed decoder would hit (custom kinds: their schema's
/// validation reports types instead).
pub fn type_mismatch(ri: &Served, obj: &Value) -> Option<skiff_openapi::Mismatch> {
    match ri.custom {
        Some(_) => None,
        None => skiff_openapi::type_mismatch(&ri.group, &ri.version, &ri.kind, obj),
    }
}

/// Fields a strict decoder would not know (without the leading dot).
pub fn unknown_fields(ri: &Served, obj: &Value) -> Vec<String> {
    match &ri.custom {
        Some(c) => c.unknown_fields(obj),
        None => skiff_openapi::unknown_fields(&ri.group, &ri.version, &ri.kind, obj),
    }
}

/// Defaulting (and, for custom kinds, pruning), on create and update.
pub fn default(ri: &Served, obj: &mut Value) {
    match &ri.custom {
        Some(c) => c.prepare(obj),
        None if is_crd(ri) => skiff_crd::default_crd(obj),
        None => skiff_validation::default_object(&ri.group, &ri.plural, obj),
    }
}

pub fn validate_create(ri: &Served, obj: &Value) -> Vec<FieldError> {
    match &ri.custom {
        Some(c) => c.validate(ri, obj, None),
        None => extension_rules(ri, obj, None)
            .unwrap_or_else(|| skiff_validation::validate_create(&ri.group, &ri.plural, obj)),
    }
}

pub fn validate_update(
    ri: &Served,
    sub: Option<Subresource>,
    new: &Value,
    old: &Value,
) -> Vec<FieldError> {
    if ri.custom.is_none()
        && let Some(errs) = extension_rules(ri, new, Some(old))
    {
        return errs;
    }
    match (&ri.custom, sub) {
        (Some(c), _) => c.validate(ri, new, Some(old)),
        (None, Some(Subresource::Status)) => {
            skiff_validation::validate_status_update(&ri.group, &ri.plural, new, old)
        }
        (None, _) => skiff_validation::validate_update(&ri.group, &ri.plural, new, old),
    }
}

/// `Warning:` headers every request to this kind gets (a deprecated CRD version).
pub fn warnings(ri: &Served) -> Vec<String> {
    ri.custom
        .as_ref()
        .and_then(|c| c.deprecation.clone())
        .into_iter()
        .collect()
}

/// Whether new objects may be created (not while their CRD is being deleted).
pub fn check_create_allowed(ri: &Served) -> Result<(), skiff_types::ApiError> {
    match &ri.custom {
        Some(c) if c.terminating => {
            let mut e =
                skiff_types::ApiError::method_not_supported(&ri.group, &ri.plural, "create");
            e.message = "create not allowed while custom resource definition is terminating".into();
            Err(e)
        }
        _ => Ok(()),
    }
}

/// The Table kubectl prints.
pub fn table(
    ri: &Served,
    objs: &[Value],
    include_object: &str,
    resource_version: &str,
    continue_token: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    match &ri.custom {
        Some(c) => skiff_printers::custom::custom_table(
            &c.columns,
            objs,
            include_object,
            resource_version,
            continue_token,
            now,
        ),
        // autoscaling/v1 prints as v2 does (kube's table comes from the internal object).
        None if ri.is_storage_alias() && ri.group == "autoscaling" => {
            let stored: Vec<Value> = objs
                .iter()
                .map(|o| crate::views::to_storage(ri, o))
                .collect();
            skiff_printers::table(
                &ri.group,
                &ri.plural,
                &stored,
                include_object,
                resource_version,
                continue_token,
                now,
            )
        }
        None => skiff_printers::table(
            &ri.group,
            &ri.plural,
            objs,
            include_object,
            resource_version,
            continue_token,
            now,
        ),
    }
}

/// The value of a selectable field (`metadata.name`, a kind's own, a CRD's
/// `selectableFields`), as field selectors compare it.
pub fn field_value(ri: &Served, obj: &Value, field: &str) -> Option<String> {
    let Some(c) = &ri.custom else {
        return skiff_validation::fields::field_value(&ri.group, &ri.plural, obj, field);
    };
    let path = match field {
        "metadata.name" | "metadata.namespace" => field.to_string(),
        f if c
            .selectable_fields
            .iter()
            .any(|s| s.trim_start_matches('.') == f) =>
        {
            f.to_string()
        }
        _ => return None,
    };
    let v = path.split('.').try_fold(obj, |cur, p| cur.get(p))?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Refuses field selectors on fields the kind does not offer, in kube's words.
pub fn check_fields(ri: &Served, sel: &skiff_validation::fields::Selector) -> Result<(), String> {
    let Some(c) = &ri.custom else {
        return skiff_validation::fields::check_supported(&ri.group, &ri.plural, sel);
    };
    for r in &sel.requirements {
        let f = r.field.as_str();
        let ok = f == "metadata.name"
            || f == "metadata.namespace"
            || c.selectable_fields
                .iter()
                .any(|s| s.trim_start_matches('.') == f);
        if !ok {
            return Err(format!("field label not supported: {f}"));
        }
    }
    Ok(())
}

/// Server-side apply of `applied` over `live`, merging lists and maps as the kind's
/// schema says (a CRD's list types and map types, or the built-in patch metadata).
pub fn server_side_apply(
    ri: &Served,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<skiff_patch::ApplyOutcome, skiff_patch::ApplyError> {
    match &ri.custom {
        Some(c) => skiff_patch::server_side_apply_with(
            live,
            applied,
            &c.schema.patch_shape(),
            manager,
            force,
            now,
        ),
        None => {
            skiff_patch::server_side_apply(live, applied, &ri.group, &ri.kind, manager, force, now)
        }
    }
}

/// Records in `new`'s managedFields what `manager` changed from `old` by an update.
pub fn record_update(
    ri: &Served,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
    sub: Option<Subresource>,
) {
    let (av, sub) = (ri.api_version(), sub.map(Subresource::name));
    match &ri.custom {
        Some(c) => {
            let shape = c.schema.patch_shape();
            skiff_patch::record_update_with(old, new, &shape, manager, &av, now, sub)
        }
        None => skiff_patch::record_update(old, new, manager, &av, now, sub),
    }
}
