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
