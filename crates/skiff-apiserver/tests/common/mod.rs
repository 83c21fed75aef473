//! A server on loopback over an in-memory store, for the API server's own tests.

use std::sync::Arc;

pub async fn start() -> (tempfile::TempDir, skiff_apiserver::server::RunningServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = skiff_apiserver::Config::new(dir.path().to_path_buf());
    config.bind_address = [127, 0, 0, 1].into();
    config.https_port = 0;
    let server = skiff_apiserver::server::start(config, Arc::new(skiff_store::MemoryStore::new()))
        .await
        .unwrap();
    (dir, server)
}
