//! Helpers shared by the sync integration tests.
#![allow(dead_code)]

use athena_config::SyncConfig;

/// The default `[sync]` settings without the write limiter getting in the tests' way.
pub fn unpaced() -> SyncConfig {
    SyncConfig {
        rate_start_ops: 1e6,
        rate_ceiling_ops: 1e6,
        ..SyncConfig::default()
    }
}

/// An object-store sink on the fake-gcs-server that `scripts/test.sh` starts (through the
/// project's translating proxy), under a fresh prefix. Fails with a clear message when the
/// test environment is missing: never a silent skip.
pub fn gcs_sink(agent: &str) -> athena_sync::ObjectStoreSink {
    let bucket = std::env::var("GCS_TEST_BUCKET").expect(
        "GCS_TEST_BUCKET is not set: run the tests with scripts/test.sh, which starts fake-gcs-server",
    );
    assert!(
        std::env::var("GOOGLE_SERVICE_ACCOUNT").is_ok(),
        "GOOGLE_SERVICE_ACCOUNT is not set: run the tests with scripts/test.sh"
    );
    let dir = std::env::temp_dir();
    athena_sync::ObjectStoreSink::from_url(&format!("gs://{bucket}/tests"), &dir, agent)
        .expect("a GCS sink on fake-gcs-server")
}

/// A fresh agent id, so tests sharing a server never see each other's data.
pub fn fresh_agent() -> String {
    format!("t-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Agent time the sync tests start at (ms since the epoch).
pub const T0: u64 = 1_800_000_000_000;

/// Observation memory `n` (id from `n`, so writing it again replaces it).
pub fn memory(n: u64) -> athena_storage::Memory {
    let md = athena_storage::Metadata {
        pool: Some(format!("POOL{}", n % 3)),
        apr: Some(n as f64),
        ..athena_storage::Metadata::default()
    };
    // A pattern: one document of its own (observations travel in hourly packs).
    athena_storage::Memory::new(
        athena_storage::MemoryType::Pattern,
        athena_storage::Category::PoolBehavior,
        format!("obs {n}"),
        md,
        0.8,
        athena_storage::Source::MarketData,
        ulid::Ulid::from_parts(T0 + n, u128::from(n) + 1),
    )
}

/// Runs one of the project's test-server scripts (`scripts/NAME ARGS…`), panicking with its
/// output when it fails.
pub fn script(name: &str, args: &[&str]) {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test"); // this checkout, even from a shared target dir
    let path = std::path::Path::new(&manifest_dir)
        .join("../scripts")
        .join(name);
    let out = std::process::Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .expect("run a test-server script");
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In-memory document and object sinks (fault injection).
pub fn sinks() -> (
    std::sync::Arc<athena_sync::MemorySink>,
    std::sync::Arc<athena_sync::MemorySink>,
) {
    use athena_sync::{MemorySink, SinkRole};
    (
        std::sync::Arc::new(MemorySink::new("docs", SinkRole::Documents)),
        std::sync::Arc::new(MemorySink::new("objects", SinkRole::Objects)),
    )
}
