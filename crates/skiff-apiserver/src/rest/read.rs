//! Reads straight from storage (consistent), and waiting for the watch cache to catch
//! up with it.

use crate::codec::from_kv;
use crate::codec::store_error;
use crate::request::Target;
use crate::state::ApiServer;
use serde_json::Value;
use skiff_store::Revision;
use skiff_types::ApiError;

impl ApiServer {
    /// A consistent read of one object from the store.
    pub async fn get_object(&self, t: &Target) -> Result<Value, ApiError> {
        match self
            .store
            .get(&t.key())
            .await
            .map_err(|e| store_error(e, t))?
        {
            Some(kv) => from_kv(&kv),
            None => Err(ApiError::not_found(&t.ri.group, &t.ri.plural, t.name())),
        }
    }

    /// Reads an object of another kind (namespaces, services) by key.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Value>, ApiError> {
        match self
            .store
            .get(key)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            Some(kv) => Ok(Some(from_kv(&kv)?)),
            None => Ok(None),
        }
    }

    /// Waits until the watch cache has everything the store acknowledged so far.
    pub async fn sync_cache(&self) -> Result<Revision, ApiError> {
        self.cache.catch_up(&*self.store).await
    }
}
