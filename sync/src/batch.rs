//! Batches: consecutive writes grouped under the sink limits (default 500 writes, 9 MiB), in
//! order. A single write over the byte limit goes alone, so the sink can reject it (a document
//! over 1 MiB is a permanent error) without holding up the rest.

use crate::coalesce::Write;
use std::ops::Range;

/// Limits of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Writes per batch at most (Firestore: 500).
    pub max_writes: usize,
    /// Bytes per batch at most.
    pub max_bytes: usize,
}

impl BatchLimits {
    /// Limits from the `[sync]` configuration.
    pub fn from_config(c: &athena_config::SyncConfig) -> Self {
        Self {
            max_writes: c.batch_max_writes as usize,
            max_bytes: c.batch_max_bytes as usize,
        }
    }
}

/// Splits `writes` into consecutive ranges that respect `limits`.
pub fn batches(writes: &[Write], limits: BatchLimits) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, w) in writes.iter().enumerate() {
        let size = w.size();
        let full =
            i - start >= limits.max_writes.max(1) || (i > start && bytes + size > limits.max_bytes);
        if full {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < writes.len() {
        out.push(start..writes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn blob(n: usize) -> Write {
        Write::PutBlob {
            path: String::new(),
            bytes: vec![0u8; n].into(),
        }
    }

    proptest! {
        #[test]
        fn batches_cover_everything_in_order_within_limits(sizes in proptest::collection::vec(0usize..3000, 0..400), max_writes in 1usize..50, max_bytes in 1usize..10_000) {
            let writes: Vec<Write> = sizes.iter().map(|&n| blob(n)).collect();
            let limits = BatchLimits { max_writes, max_bytes };
            let ranges = batches(&writes, limits);
            let mut next = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty());
                prop_assert!(r.len() <= max_writes);
                let bytes: usize = writes[r.clone()].iter().map(Write::size).sum();
                prop_assert!(bytes <= max_bytes || r.len() == 1, "batch of {} bytes", bytes);
                next = r.end;
            }
            prop_assert_eq!(next, writes.len());
        }
    }

    #[test]
    fn an_oversized_write_goes_alone() {
        let writes = vec![blob(10), blob(2_000_000), blob(10)];
        let r = batches(
            &writes,
            BatchLimits {
                max_writes: 500,
                max_bytes: 1_000_000,
            },
        );
        assert_eq!(r, vec![0..1, 1..2, 2..3]);
    }
}
