//! The CEL environment of admission expressions (webhook matchConditions and
//! ValidatingAdmissionPolicy), on cel-rust.
//!
//! The standard library with its macros, plus the strings and lists extensions, as
//! skiff-crd uses for CRD rules. Variables: `object`, `oldObject` (null when absent),
//! `request` (admission.k8s.io/v1 AdmissionRequest fields), and for policies `params`,
//! `namespaceObject` and `variables`. Not provided: `authorizer` (an expression naming
//! it fails to evaluate), kube's `url()`, `quantity()`, `ip()`, `cidr()`, `semver()`
//! libraries, type checking and cost limits (cel-rust only parses at compile time).

use crate::attributes::Attributes;
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Both extensions only add overloads; failing to add one would be a bug here.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        Arc::new(env)
    })
}

/// One compiled expression (its source kept for messages).
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub source: String,
    program: Arc<Program>,
}

/// Compiles `source`; the error is kube-like (`compilation failed: ...`).
pub(crate) fn compile(source: &str) -> Result<Expr, String> {
    env()
        .compile(source)
        .map(|program| Expr {
            source: source.to_string(),
            program: Arc::new(program),
        })
        .map_err(|e| format!("compilation failed: {e}"))
}

/// A JSON value as CEL sees it.
pub(crate) fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => map_of(m.iter().map(|(k, v)| (k.clone(), to_cel(v)))),
    }
}

pub(crate) fn map_of(entries: impl IntoIterator<Item = (String, Cel)>) -> Cel {
    let map: HashMap<Key, Cel> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), v))
        .collect();
    Cel::Map(CelMap { map: Arc::new(map) })
}

/// The `request` variable: the AdmissionRequest kube builds for CEL
/// (`CreateAdmissionRequest`), kind/resource being the matched ones.
pub(crate) fn request_json(a: &Attributes, kind: &crate::Gvk, resource: &crate::Gvr) -> Value {
    json!({
        "kind": kind.to_json(),
        "resource": resource.to_json(),
        "subResource": a.sub_resource,
        "requestKind": a.kind.to_json(),
        "requestResource": a.resource.to_json(),
        "requestSubResource": a.sub_resource,
        "name": a.name,
        "namespace": a.namespace,
        "operation": a.operation.as_str(),
        "userInfo": a.user.to_json(),
        "dryRun": a.dry_run,
        "options": a.options.clone().unwrap_or(Value::Null),
    })
}

/// Variables bound for one evaluation.
pub(crate) struct Vars {
    ctx: Context<'static, 'static>,
}

impl Vars {
    pub(crate) fn new() -> Vars {
        Vars {
            ctx: Context::with_env(env().clone()),
        }
    }

    pub(crate) fn set(&mut self, name: &str, v: Cel) {
        self.ctx.add_variable_from_value(name.to_string(), v);
    }

    pub(crate) fn set_json(&mut self, name: &str, v: Option<&Value>) {
        self.set(name, v.map(to_cel).unwrap_or(Cel::Null));
    }

    /// Runs `e`; errors worded as cel-go words them.
    pub(crate) fn eval(&self, e: &Expr) -> Result<Cel, String> {
        e.program
            .execute(&self.ctx)
            .map_err(|err| runtime_error(&err))
    }

    /// Runs `e`, which must give a bool.
    pub(crate) fn eval_bool(&self, e: &Expr) -> Result<bool, String> {
        match self.eval(e)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!(
                "expression must evaluate to a bool, got {}",
                type_name(&other)
            )),
        }
    }
}

fn type_name(v: &Cel) -> &'static str {
    match v {
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bool(_) => "bool",
        Cel::Null => "null_type",
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        _ => "value",
    }
}

fn runtime_error(err: &ExecutionError) -> String {
    match err {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::NoSuchOverload(_) => "no such overload".to_string(),
        ExecutionError::UndeclaredReference(n) => {
            format!("undeclared reference to '{n}' (in container '')")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_over_json() {
        let mut v = Vars::new();
        v.set_json(
            "object",
            Some(&json!({"spec": {"replicas": 3}, "metadata": {"labels": {"a": "b"}}})),
        );
        let t = |s: &str| v.eval_bool(&compile(s).unwrap());
        assert_eq!(t("object.spec.replicas <= 3"), Ok(true));
        assert_eq!(
            t("has(object.metadata.labels) && object.metadata.labels.a == 'b'"),
            Ok(true)
        );
        assert_eq!(t("object.spec.nope > 1"), Err("no such key: nope".into()));
        assert!(compile("object.spec.(").is_err());
    }
}
