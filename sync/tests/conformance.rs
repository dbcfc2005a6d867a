//! One conformance suite every object sink passes: the in-memory fake, the local directory
//! (the embedded default), `object_store`'s in-memory backend, and GCS (fake-gcs-server behind
//! the project's proxy, started by `scripts/test.sh`). Object-store sinks also keep the
//! manifest, checked here including two writers racing on one prefix. The Firestore sink's
//! document contract runs against the emulator in `firestore.rs`.

mod common;

use athena_sync::{
    ErrorKind, MANIFEST_PATH, ManifestEntry, MemorySink, ObjectStoreSink, Sink, SinkRole, Write,
};
use bytes::Bytes;
use std::sync::Arc;

fn put(path: &str, data: &[u8]) -> Write {
    Write::PutBlob {
        path: path.into(),
        bytes: Bytes::copy_from_slice(data),
    }
}

fn delete(path: &str) -> Write {
    Write::DeleteBlob { path: path.into() }
}

/// The object-sink contract; `read` reads an object back from the sink's backend.
async fn object_sink_contract<F, Fut>(sink: &dyn Sink, read: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<Bytes>>,
{
    assert_eq!(sink.role(), SinkRole::Objects);
    // A batch: one result per write, in order.
    let results = sink
        .push(&[
            put("segments/a.seg", b"alpha"),
            put("checkpoints/1.ckpt", &[7u8; 70_000]),
            put("segments/b.seg", b""),
        ])
        .await;
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        read("segments/a.seg".into()).await.as_deref(),
        Some(&b"alpha"[..])
    );
    assert_eq!(
        read("checkpoints/1.ckpt".into()).await.map(|b| b.len()),
        Some(70_000)
    );
    assert_eq!(
        read("segments/b.seg".into()).await.as_deref(),
        Some(&b""[..])
    );
    // Idempotent: the same put again is fine, and overwrites.
    assert!(sink.push(&[put("segments/a.seg", b"alpha")]).await[0].is_ok());
    assert!(sink.push(&[put("segments/a.seg", b"alpha-2")]).await[0].is_ok());
    assert_eq!(
        read("segments/a.seg".into()).await.as_deref(),
        Some(&b"alpha-2"[..])
    );
    // Delete, and delete again (a replay): both succeed.
    assert!(sink.push(&[delete("segments/a.seg")]).await[0].is_ok());
    assert!(sink.push(&[delete("segments/a.seg")]).await[0].is_ok());
    assert_eq!(read("segments/a.seg".into()).await, None);
}

#[tokio::test]
async fn memory_object_sink_passes() {
    let sink = Arc::new(MemorySink::new("memory", SinkRole::Objects));
    let s = sink.clone();
    object_sink_contract(sink.as_ref(), |p| {
        let s = s.clone();
        async move { s.state().blobs.get(&p).cloned() }
    })
    .await;
}

#[tokio::test]
async fn local_directory_sink_passes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(ObjectStoreSink::from_url("file://sync", dir.path(), "agent-1").unwrap());
    let s = sink.clone();
    object_sink_contract(sink.as_ref(), |p| {
        let s = s.clone();
        async move { s.get(&p).await.ok() }
    })
    .await;
    // Objects live under {dir}/{agent_id}/ in the data directory.
    assert!(dir.path().join("sync/agent-1/checkpoints/1.ckpt").is_file());
}

/// The manifest contract of object-store sinks: it lists exactly the confirmed objects with
/// their sizes and digests, and two writers racing on one prefix lose none of each other's
/// entries (conditional writes), where the backend supports conditional updates.
async fn manifest_contract(a: &ObjectStoreSink, b: &ObjectStoreSink, conditional: bool) {
    assert!(a.manifest().await.unwrap().objects.is_empty());
    let r = a
        .push(&[
            put("segments/x.seg", b"x-bytes"),
            put("checkpoints/1.ckpt", b"one"),
        ])
        .await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let m = a.manifest().await.unwrap();
    assert_eq!(m.objects.len(), 2);
    assert_eq!(m.objects["segments/x.seg"], ManifestEntry::of(b"x-bytes"));
    assert!(a.push(&[delete("segments/x.seg")]).await[0].is_ok());
    let m = a.manifest().await.unwrap();
    assert_eq!(
        m.objects.keys().collect::<Vec<_>>(),
        vec!["checkpoints/1.ckpt"]
    );
    assert!(a.get(MANIFEST_PATH).await.is_ok());
    if !conditional {
        return;
    }
    // Two writers, each adding its own objects one batch at a time, at the same moment.
    let batches = |who: &'static str| async move {
        let sink = if who == "a" { a } else { b };
        for i in 0..12 {
            let r = sink
                .push(&[put(&format!("segments/{who}-{i}.seg"), who.as_bytes())])
                .await;
            assert!(r[0].is_ok(), "{who} {i}: {r:?}");
        }
    };
    tokio::join!(batches("a"), batches("b"));
    let m = b.manifest().await.unwrap();
    assert_eq!(m.objects.len(), 1 + 24, "{:?}", m.objects.keys());
}

#[tokio::test]
async fn local_directory_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let a = ObjectStoreSink::from_url("file://sync", dir.path(), "agent-1").unwrap();
    let b = ObjectStoreSink::from_url("file://sync", dir.path(), "agent-1").unwrap();
    manifest_contract(&a, &b, false).await;
}

#[tokio::test]
async fn in_memory_object_store_manifest_with_racing_writers() {
    let store = Arc::new(object_store::memory::InMemory::new());
    let a = ObjectStoreSink::new("mem", store.clone(), "agent-1");
    let b = ObjectStoreSink::new("mem", store, "agent-1");
    manifest_contract(&a, &b, true).await;
}

#[tokio::test]
async fn gcs_sink_passes() {
    let agent = common::fresh_agent();
    let sink = Arc::new(common::gcs_sink(&agent));
    let s = sink.clone();
    object_sink_contract(sink.as_ref(), |p| {
        let s = s.clone();
        async move { s.get(&p).await.ok() }
    })
    .await;
    let err = sink.get("segments/none.seg").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
}

#[tokio::test]
async fn gcs_manifest_with_racing_writers() {
    let agent = common::fresh_agent();
    manifest_contract(&common::gcs_sink(&agent), &common::gcs_sink(&agent), true).await;
}

#[tokio::test]
async fn missing_objects_and_bad_urls_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectStoreSink::from_url("file://sync", dir.path(), "a").unwrap();
    let err = sink.get("segments/none.seg").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    for (url, needle) in [
        ("ftp://x", "unsupported scheme ftp"),
        ("gs://", "the bucket is missing"),
        ("nonsense", "expected SCHEME://"),
    ] {
        let e = ObjectStoreSink::from_url(url, dir.path(), "a")
            .err()
            .expect(url)
            .to_string();
        assert!(e.contains(needle), "{url}: {e}");
    }
}

#[tokio::test]
async fn a_document_write_sent_to_an_object_sink_is_invalid_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectStoreSink::from_url("file://sync", dir.path(), "a").unwrap();
    let r = sink
        .push(&[Write::Delete {
            collection: "c".into(),
            doc: "d".into(),
        }])
        .await;
    assert_eq!(r[0].as_ref().unwrap_err().kind, ErrorKind::Invalid);
}

/// The proxy in front of fake-gcs-server makes every `object_store` operation work, so later
/// code (checkpoints, restores) can use any of them against the test server.
#[tokio::test]
async fn gcs_test_server_supports_every_object_store_operation() {
    use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, path::Path};
    let _ = common::gcs_sink("probe"); // checks the environment with a clear message
    let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(std::env::var("GCS_TEST_BUCKET").unwrap())
        .build()
        .unwrap();
    let base = common::fresh_agent();
    let p = |name: &str| Path::from(format!("{base}/{name}"));
    // Multipart: three parts (5 MiB minimum per part, except the last).
    let mut upload = gcs.put_multipart(&p("big")).await.unwrap();
    let part = vec![7u8; 5 * 1024 * 1024];
    upload
        .put_part(PutPayload::from(part.clone()))
        .await
        .unwrap();
    upload.put_part(PutPayload::from(part)).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![9u8; 10]))
        .await
        .unwrap();
    upload.complete().await.unwrap();
    let big = gcs.get(&p("big")).await.unwrap().bytes().await.unwrap();
    assert_eq!(big.len(), 10 * 1024 * 1024 + 10);
    assert_eq!(big[big.len() - 1], 9);
    // Copy, and copy-if-absent refusing an existing target.
    gcs.copy(&p("big"), &p("copy")).await.unwrap();
    assert_eq!(gcs.head(&p("copy")).await.unwrap().size, big.len() as u64);
    assert!(matches!(
        gcs.copy_if_not_exists(&p("big"), &p("copy")).await,
        Err(object_store::Error::AlreadyExists { .. })
    ));
    // Create refuses an existing object; Update needs the current generation.
    gcs.put(&p("small"), PutPayload::from_static(b"1"))
        .await
        .unwrap();
    assert!(matches!(
        gcs.put_opts(
            &p("small"),
            PutPayload::from_static(b"2"),
            PutMode::Create.into()
        )
        .await,
        Err(object_store::Error::AlreadyExists { .. })
    ));
    let meta = gcs.head(&p("small")).await.unwrap();
    let version = object_store::UpdateVersion {
        e_tag: meta.e_tag,
        version: meta.version,
    };
    gcs.put_opts(
        &p("small"),
        PutPayload::from_static(b"3"),
        PutMode::Update(version.clone()).into(),
    )
    .await
    .unwrap();
    assert!(matches!(
        gcs.put_opts(
            &p("small"),
            PutPayload::from_static(b"4"),
            PutMode::Update(version).into()
        )
        .await,
        Err(object_store::Error::Precondition { .. })
    ));
    // Range reads, listing and deletes.
    let range = gcs.get_range(&p("small"), 0..1).await.unwrap();
    assert_eq!(&range[..], b"3");
    let listed: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(gcs.list(Some(&Path::from(base.clone()))))
            .await
            .into_iter()
            .map(|m| m.unwrap().location.to_string())
            .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    gcs.delete(&p("copy")).await.unwrap();
    assert!(matches!(
        gcs.head(&p("copy")).await,
        Err(object_store::Error::NotFound { .. })
    ));
}
