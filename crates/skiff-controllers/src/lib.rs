//! Control loops that act through the API like any client (kube-rs): today the
//! scheduler. Each loop is level-triggered: a watch only wakes it, and every round looks
//! at the whole current state.

pub mod events;
pub mod ipam;
pub mod nodelifecycle;
pub mod scheduler;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The API answered with an error or could not be reached; the loop retries.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// An object did not (de)serialize; a bug or an incompatible server.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every object of a kind, cluster-wide, as JSON (the form the pure cores take).
pub(crate) async fn list_all<K>(client: &kube::Client) -> Result<Vec<serde_json::Value>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
    K::DynamicType: Default,
{
    let items = kube::Api::<K>::all(client.clone())
        .list(&kube::api::ListParams::default())
        .await?
        .items;
    Ok(items
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?)
}
