//! The encrypting store over a real store: sealed below, plain above, through a
//! rotation whose every step leaves every value readable.

use bytes::Bytes;
use futures::StreamExt;
use skiff_encryption::config::{Keys, ProviderConfig, key_config};
use skiff_encryption::providers::{Kind, generate};
use skiff_encryption::{EncryptingStore, EncryptionConfiguration};
use skiff_store::{MemoryStore, Store};
use std::sync::Arc;

fn with_keys(
    c: &EncryptionConfiguration,
    keys: Vec<skiff_encryption::providers::Key>,
) -> EncryptionConfiguration {
    let mut c = c.clone();
    c.resources[0].providers[0] = ProviderConfig {
        aescbc: Some(Keys {
            keys: keys.iter().map(key_config).collect(),
        }),
        ..ProviderConfig::default()
    };
    c
}

#[tokio::test]
async fn sealed_below_plain_above_through_a_rotation() {
    let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let config = EncryptionConfiguration::generated();
    let store = EncryptingStore::new(raw.clone(), &config).unwrap();
    // Written before encryption: plaintext, still readable (identity).
    raw.create(
        "/registry/secrets/ns/old",
        Bytes::from_static(b"{\"old\":1}"),
    )
    .await
    .unwrap();
    let mut watch = store.watch("/registry/", 0).await.unwrap();
    for i in 0..5 {
        let v = format!("{{\"data\":\"topsecret{i}\"}}");
        store
            .create(&format!("/registry/secrets/ns/s{i}"), Bytes::from(v))
            .await
            .unwrap();
    }
    store
        .create(
            "/registry/configmaps/ns/c",
            Bytes::from_static(b"{\"plain\":true}"),
        )
        .await
        .unwrap();

    let below = raw
        .get("/registry/secrets/ns/s1")
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(
        below.starts_with(b"k8s:enc:aescbc:v1:aescbckey-"),
        "{below:?}"
    );
    assert!(!below.windows(9).any(|w| w == b"topsecret"));
    let above = store
        .get("/registry/secrets/ns/s1")
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(&above[..], b"{\"data\":\"topsecret1\"}");
    assert_eq!(
        &raw.get("/registry/configmaps/ns/c")
            .await
            .unwrap()
            .unwrap()
            .value[..],
        b"{\"plain\":true}"
    );
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.kv.key, "/registry/secrets/ns/old");
    let second = watch.next().await.unwrap().unwrap();
    assert_eq!(&second.kv.value[..], b"{\"data\":\"topsecret0\"}");

    let s = store.status().await.unwrap();
    assert_eq!(s.stored_by_key.get("identity"), Some(&1));
    assert_eq!(s.stored_by_key.values().sum::<usize>(), 6);

    // Rotation: the new key first, the old kept; rewrite; the old dropped.
    let old = skiff_encryption::config::EncryptionConfiguration::transformers(&config).unwrap()[0]
        .1
        .write_key()
        .unwrap()
        .clone();
    let new = generate(Kind::AesCbc, "rotated");
    let both = with_keys(&config, vec![new.clone(), old]);
    store.reload(&both).unwrap();
    store
        .create(
            "/registry/secrets/ns/during",
            Bytes::from_static(b"{\"d\":1}"),
        )
        .await
        .unwrap();
    for i in 0..5 {
        assert!(
            store
                .get(&format!("/registry/secrets/ns/s{i}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(
        store.rewrite_stale().await.unwrap(),
        6,
        "five sealed with the old key, one plain"
    );
    assert_eq!(store.rewrite_stale().await.unwrap(), 0);
    // A watcher that keeps up (the watch cache) has read everything the old key sealed
    // before that key goes.
    let mut seen = 0;
    while let Some(Ok(ev)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), watch.next())
            .await
            .ok()
            .flatten()
    {
        assert!(!ev.kv.value.starts_with(b"k8s:enc:"), "{:?}", ev.kv);
        seen += 1;
    }
    assert_eq!(
        seen,
        4 + 1 + 1 + 6,
        "creates, the one during rotation, the rewrites"
    );
    let only_new = with_keys(&config, vec![new]);
    store.reload(&only_new).unwrap();
    for i in 0..5 {
        let v = store
            .get(&format!("/registry/secrets/ns/s{i}"))
            .await
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(v, Bytes::from(format!("{{\"data\":\"topsecret{i}\"}}")));
    }
    let s = store.status().await.unwrap();
    assert_eq!(
        s.stored_by_key.get("aescbc:rotated"),
        Some(&7),
        "{:?}",
        s.stored_by_key
    );
    // The watch opened under the first configuration reads what the last one seals.
    store
        .create(
            "/registry/secrets/ns/after",
            Bytes::from_static(b"{\"a\":1}"),
        )
        .await
        .unwrap();
    let ev = watch.next().await.unwrap().unwrap();
    assert_eq!(&ev.kv.value[..], b"{\"a\":1}");
}

#[tokio::test]
async fn values_no_key_opens_are_errors_not_garbage() {
    let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = EncryptingStore::new(raw.clone(), &EncryptionConfiguration::generated()).unwrap();
    a.create("/registry/secrets/ns/x", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let b = EncryptingStore::new(raw, &EncryptionConfiguration::generated()).unwrap();
    let e = b
        .get("/registry/secrets/ns/x")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no key of the configuration opens this value"),
        "{e}"
    );
}
