//! CRD conversion webhooks (apiextensions.k8s.io `spec.conversion.strategy: Webhook`),
//! called as kube-apiserver's webhook converter calls them: a ConversionReview POSTed
//! over the same HTTPS client admission webhooks use, its answer checked, and each
//! converted object given back the original's metadata but for labels and annotations.

use crate::client::{self, Resolver, Target, Transport};
use crate::converted::{self, Refusal};
use crate::error::ConversionError;
use crate::webhook::{self, ClientConfig, RawClientConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// How long a conversion call may take: kube gives conversion webhooks a fixed 30 s.
const TIMEOUT_SECONDS: u32 = 30;

/// A CRD's `spec.conversion.webhook`: where its conversion webhook is reached and the
/// ConversionReview versions it accepts, in its order of preference.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionWebhook {
    pub client: ClientConfig,
    /// The PEM CA bundle (decoded from `caBundle`); empty means system roots.
    pub ca_bundle: Vec<u8>,
    pub conversion_review_versions: Vec<String>,
}

impl ConversionWebhook {
    /// From `spec.conversion.webhook.clientConfig` (url, or service with its port
    /// defaulting to 443, and caBundle) and `conversionReviewVersions`, as
    /// `skiff_crd::Conversion` holds them.
    pub fn new(
        client_config: &Value,
        conversion_review_versions: Vec<String>,
    ) -> Result<ConversionWebhook, String> {
        let raw: RawClientConfig =
            serde_json::from_value(client_config.clone()).map_err(|e| e.to_string())?;
        Ok(ConversionWebhook {
            client: webhook::client_config(&raw)?,
            ca_bundle: webhook::ca_bundle(&raw)?,
            conversion_review_versions,
        })
    }

    /// From a CustomResourceDefinition object: `None` unless its
    /// `spec.conversion.strategy` is Webhook.
    pub fn from_crd(crd: &Value) -> Result<Option<ConversionWebhook>, String> {
        let Some(c) = crd.pointer("/spec/conversion") else {
            return Ok(None);
        };
        if c.get("strategy").and_then(Value::as_str) != Some("Webhook") {
            return Ok(None);
        }
        let hook = c.get("webhook").unwrap_or(&Value::Null);
        let config = hook
            .get("clientConfig")
            .ok_or("spec.conversion.webhook.clientConfig is required")?;
        let versions = hook
            .get("conversionReviewVersions")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("spec.conversion.webhook.conversionReviewVersions: {e}"))?
            .unwrap_or_default();
        ConversionWebhook::new(config, versions).map(Some)
    }
}

/// Calls CRD conversion webhooks, keeping HTTP/2 connections to them.
#[derive(Clone)]
pub struct Converter {
    transport: Arc<Transport>,
}

/// The ConversionReview version sent: the first of the webhook's kube knows.
fn review_version(versions: &[String]) -> Result<&'static str, ConversionError> {
    crate::review::pick_version(versions).map_err(|_| ConversionError::NoSupportedVersion)
}

fn api_version(v: &Value) -> &str {
    v.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// What kube's nop converter handles without a call: an object with nothing but
/// apiVersion and kind (the API machinery converts such empty objects to probe).
fn is_empty_object(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 2 && m.contains_key("apiVersion") && m.contains_key("kind"))
}

impl Converter {
    pub fn new(resolver: Arc<dyn Resolver>) -> Converter {
        Converter {
            transport: Arc::new(Transport::new(resolver)),
        }
    }

    pub(crate) fn with_transport(transport: Arc<Transport>) -> Converter {
        Converter { transport }
    }

    /// Converts a list's items to `desired_api_version` (`group/version`), as kube
    /// converts an UnstructuredList: items already in that version are not sent and
    /// keep their place; when none needs converting no call is made. Errors name the
    /// list's kind (`<first sent item's group/version>, Kind=<kind>List`) and word
    /// item errors as kube's list path does. As in kube, a webhook without a known
    /// ConversionReview version is an error even when nothing needs converting.
    pub async fn convert(
        &self,
        hook: &ConversionWebhook,
        mut objects: Vec<Value>,
        desired_api_version: &str,
    ) -> Result<Vec<Value>, ConversionError> {
        let version = review_version(&hook.conversion_review_versions)?;
        let sent: Vec<usize> = (0..objects.len())
            .filter(|&i| api_version(&objects[i]) != desired_api_version)
            .collect();
        let Some(&first) = sent.first() else {
            return Ok(objects);
        };
        let first = &objects[first];
        let gvk = converted::gvk_text(
            api_version(first),
            &format!(
                "{}List",
                first.get("kind").and_then(Value::as_str).unwrap_or("")
            ),
        );
        let batch: Vec<&Value> = sent.iter().map(|&i| &objects[i]).collect();
        let answers = self
            .call(hook, version, &batch, desired_api_version, &gvk)
            .await?;
        for (n, (i, answer)) in sent.into_iter().zip(answers).enumerate() {
            let item = converted::accept(&objects[i], answer, desired_api_version)
                .map_err(|r| list_refusal(&gvk, n, r))?;
            objects[i] = item;
        }
        Ok(objects)
    }

    /// Converts one object to `desired_api_version`, as kube converts a single
    /// custom resource: returned unchanged, with no call, when already in that
    /// version.
    pub async fn convert_object(
        &self,
        hook: &ConversionWebhook,
        mut object: Value,
        desired_api_version: &str,
    ) -> Result<Value, ConversionError> {
        if is_empty_object(&object) {
            object["apiVersion"] = json!(desired_api_version);
            return Ok(object);
        }
        let version = review_version(&hook.conversion_review_versions)?;
        if api_version(&object) == desired_api_version {
            return Ok(object);
        }
        let gvk = converted::object_gvk(&object);
        let mut answers = self
            .call(hook, version, &[&object], desired_api_version, &gvk)
            .await?;
        let answer = answers.pop().unwrap_or_default();
        converted::accept(&object, answer, desired_api_version).map_err(|r| single_refusal(&gvk, r))
    }

    /// One ConversionReview exchange: the converted objects, one per object sent.
    async fn call(
        &self,
        hook: &ConversionWebhook,
        version: &str,
        objects: &[&Value],
        desired: &str,
        gvk: &str,
    ) -> Result<Vec<Value>, ConversionError> {
        let failed = |reason: String| ConversionError::Failed {
            gvk: gvk.to_string(),
            reason,
        };
        let target = Target::new(&hook.client, &hook.ca_bundle, TIMEOUT_SECONDS).map_err(failed)?;
        let uid = uuid::Uuid::new_v4().to_string();
        let body = review_request(&uid, version, objects, desired);
        let bytes = serde_json::to_vec(&body).map_err(|e| failed(e.to_string()))?;
        tracing::debug!(url = %target.url, desired, objects = objects.len(), "calling conversion webhook");
        let answer = client::post_json(&self.transport, &target, bytes)
            .await
            .map_err(failed)?;
        let converted = review_response(&uid, version, &answer).map_err(|e| match e {
            Answer::Bad(reason) => failed(reason),
            Answer::Refused(message) => ConversionError::Refused {
                gvk: gvk.to_string(),
                message,
            },
        })?;
        if converted.len() != objects.len() {
            return Err(ConversionError::WrongCount {
                gvk: gvk.to_string(),
                got: converted.len(),
                expected: objects.len(),
            });
        }
        Ok(converted)
    }
}

/// The ConversionReview sent. Like kube, it carries an empty `response` too: kube
/// serializes the review with a zero ConversionResponse set, and webhooks built
/// against it may echo that object back.
fn review_request(uid: &str, version: &str, objects: &[&Value], desired: &str) -> Value {
    json!({
        "kind": "ConversionReview",
        "apiVersion": format!("apiextensions.k8s.io/{version}"),
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
        "response": {"uid": "", "convertedObjects": null, "result": {"metadata": {}}},
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReview {
    api_version: Option<String>,
    kind: Option<String>,
    response: Option<RawResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    uid: Option<String>,
    converted_objects: Option<Vec<Value>>,
    result: Option<RawResult>,
}

#[derive(Deserialize)]
struct RawResult {
    status: Option<String>,
    message: Option<String>,
}

/// Why an answer gives no converted objects.
enum Answer {
    /// Malformed, or not the answer to this request.
    Bad(String),
    /// `result.status` not Success: the webhook's message or kube's.
    Refused(String),
}

/// kube's `getConvertedObjectsFromResponse`: v1 answers must be v1 ConversionReviews
/// for this uid (v1beta1 ones were never checked, and kube keeps it so); both must
/// say Success.
fn review_response(uid: &str, version: &str, body: &[u8]) -> Result<Vec<Value>, Answer> {
    let review: RawReview = serde_json::from_slice(body).map_err(|e| Answer::Bad(e.to_string()))?;
    if version == "v1" {
        let got = converted::gvk_text(
            review.api_version.as_deref().unwrap_or_default(),
            review.kind.as_deref().unwrap_or_default(),
        );
        let want = "apiextensions.k8s.io/v1, Kind=ConversionReview";
        if got != want {
            return Err(Answer::Bad(format!(
                "expected webhook response of {want}, got {got}"
            )));
        }
    }
    let r = review
        .response
        .ok_or_else(|| Answer::Bad("no response provided".into()))?;
    let got_uid = r.uid.unwrap_or_default();
    if version == "v1" && got_uid != uid {
        return Err(Answer::Bad(format!(
            "expected response.uid={uid:?}, got {got_uid:?}"
        )));
    }
    let result = r.result.unwrap_or(RawResult {
        status: None,
        message: None,
    });
    let status = result.status.unwrap_or_default();
    if status != "Success" {
        return Err(Answer::Refused(match result.message {
            Some(m) if !m.is_empty() => m,
            _ => format!("response.result.status was '{status}', not 'Success'"),
        }));
    }
    Ok(r.converted_objects.unwrap_or_default())
}

/// A refused item of a single-object conversion, worded as kube's single path.
fn single_refusal(gvk: &str, r: Refusal) -> ConversionError {
    let detail = match r {
        Refusal::Undecodable(e) => return ConversionError::Undecodable(e),
        Refusal::GroupVersion { expected, got } => format!(
            "returned invalid object at index 0: invalid groupVersion (expected {expected}, received {got})"
        ),
        Refusal::Kind { expected, got } => format!(
            "returned invalid object at index 0: invalid kind (expected {expected}, received {got})"
        ),
        Refusal::Identity(e) => format!("returned invalid object: {e}"),
        Refusal::Metadata(e) => format!("returned invalid metadata: {e}"),
    };
    ConversionError::InvalidObject {
        gvk: gvk.to_string(),
        detail,
    }
}

/// A refused item `n` (0-based among those sent) of a list conversion, worded as
/// kube's list path. kube counts the index from 1 in all but the decoding error (it
/// advances its index before those checks); the texts keep that.
fn list_refusal(gvk: &str, n: usize, r: Refusal) -> ConversionError {
    let at = n + 1;
    let detail = match r {
        Refusal::Undecodable(e) => {
            format!("returned invalid converted object at index {n}: {e}")
        }
        Refusal::GroupVersion { expected, got } => format!(
            "returned invalid converted object at index {at}: invalid groupVersion (expected {expected}, received {got})"
        ),
        Refusal::Kind { expected, got } => format!(
            "returned invalid converted object at index {at}: invalid kind (expected {expected}, received {got})"
        ),
        Refusal::Identity(e) => format!("returned invalid converted object at index {at}: {e}"),
        Refusal::Metadata(e) => format!("returned invalid metadata in object at index {at}: {e}"),
    };
    ConversionError::InvalidObject {
        gvk: gvk.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_known_review_version_is_used() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(review_version(&v(&["v2", "v1beta1", "v1"])), Ok("v1beta1"));
        assert_eq!(review_version(&v(&["v1", "v1beta1"])), Ok("v1"));
        assert_eq!(
            review_version(&v(&["v2"])),
            Err(ConversionError::NoSupportedVersion)
        );
    }

    #[test]
    fn answers_are_checked_as_kube_checks_them() {
        let bad = |r: Result<Vec<Value>, Answer>| match r {
            Err(Answer::Bad(m) | Answer::Refused(m)) => m,
            Ok(_) => panic!("accepted"),
        };
        let body = |v: Value| serde_json::to_vec(&v).unwrap();
        let v1 = |resp: Value| {
            body(
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": resp}),
            )
        };
        assert_eq!(
            bad(review_response(
                "u",
                "v1",
                &body(
                    json!({"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview"})
                )
            )),
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got apiextensions.k8s.io/v1beta1, Kind=ConversionReview"
        );
        assert_eq!(
            bad(review_response("u", "v1", &v1(Value::Null))),
            "no response provided"
        );
        assert_eq!(
            bad(review_response(
                "u",
                "v1",
                &v1(json!({"uid": "u", "result": {"status": "Failure"}}))
            )),
            "response.result.status was 'Failure', not 'Success'"
        );
        // v1beta1 answers are not checked for uid or apiVersion.
        let beta = body(
            json!({"response": {"uid": "other", "result": {"status": "Success"}, "convertedObjects": [{}]}}),
        );
        assert_eq!(
            review_response("u", "v1beta1", &beta).ok(),
            Some(vec![json!({})])
        );
    }
}
