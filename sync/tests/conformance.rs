//! One conformance suite every sink passes. Object sinks: the in-memory fake and the local
//! directory (the embedded default); the GCS (fake-gcs-server) and Firestore (emulator) runs
//! join this suite with the real-server test environment.

use athena_sync::{ErrorKind, MemorySink, ObjectStoreSink, Sink, SinkRole, Write};
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
