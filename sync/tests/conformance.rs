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
