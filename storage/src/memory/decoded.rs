//! The memories the last pruning pass decoded, kept so the next pass decodes only what changed.
//!
//! Pruning reads every local memory each pass (hourly), yet between two passes only a few are
//! written. An entry is keyed by the memory's id and holds the exact stored bytes it was decoded
//! from: a record whose bytes are unchanged decodes to the same memory (a dictionary never
//! changes once its id is given), so a hit is taken only on byte equality and the cache can
//! never answer with a stale memory, whatever wrote the store in between (the agent, recovery,
//! another process). Each pass keeps only the entries it saw, so the cache holds at most the
//! live memories, which the quotas bound.

use super::model::Memory;
use std::collections::HashMap;
use std::sync::Arc;
use ulid::Ulid;

struct Entry {
    bytes: Box<[u8]>,
    memory: Arc<Memory>,
}

/// Decoded memories by id, each with the bytes it came from.
#[derive(Default)]
pub(crate) struct DecodedMemories {
    entries: HashMap<Ulid, Entry>,
}

/// One pass over the stored memories: takes hits from the previous pass's entries and keeps
/// what it sees for the next.
pub(crate) struct Pass {
    previous: HashMap<Ulid, Entry>,
    seen: HashMap<Ulid, Entry>,
    /// Records decoded in this pass (misses).
    pub decoded: usize,
}

impl DecodedMemories {
    /// Starts a pass; the entries move into it and come back with [`Self::finish`].
    pub(crate) fn begin(&mut self) -> Pass {
        Pass {
            previous: std::mem::take(&mut self.entries),
            seen: HashMap::new(),
            decoded: 0,
        }
    }

    /// Keeps the entries the pass saw, dropping those of memories no longer stored.
    pub(crate) fn finish(&mut self, pass: Pass) {
        self.entries = pass.seen;
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Pass {
    /// The memory stored as `bytes` under `id`: the previous pass's decoding when the bytes are
    /// the same, else `decode(bytes)`.
    pub(crate) fn get<E>(
        &mut self,
        id: Ulid,
        bytes: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<Memory, E>,
    ) -> Result<Arc<Memory>, E> {
        let entry = match self.previous.remove(&id) {
            Some(e) if *e.bytes == *bytes => e,
            _ => {
                self.decoded += 1;
                Entry {
                    bytes: bytes.into(),
                    memory: Arc::new(decode(bytes)?),
                }
            }
        };
        let memory = Arc::clone(&entry.memory);
        self.seen.insert(id, entry);
        Ok(memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(id: Ulid, content: &str) -> Memory {
        use super::super::model::{Category, MemoryType, Metadata, Source};
        Memory::new(
            MemoryType::Observation,
            Category::PoolBehavior,
            content,
            Metadata::default(),
            0.5,
            Source::Rule,
            id,
        )
    }

    fn decode_as(content: &str) -> impl FnOnce(&[u8]) -> Result<Memory, ()> + '_ {
        move |b: &[u8]| Ok(memory(Ulid::from_parts(1, u128::from(b[0])), content))
    }

    #[test]
    fn same_bytes_hit_changed_bytes_decode_again_and_unseen_ids_are_dropped() {
        let (a, b) = (Ulid::from_parts(1, 1), Ulid::from_parts(1, 2));
        let mut cache = DecodedMemories::default();
        let mut pass = cache.begin();
        assert_eq!(
            pass.get(a, &[1], decode_as("first")).unwrap().content,
            "first"
        );
        assert_eq!(pass.get(b, &[2], decode_as("b")).unwrap().content, "b");
        assert_eq!(pass.decoded, 2);
        cache.finish(pass);

        let mut pass = cache.begin();
        // Same bytes: the earlier decoding, the decoder is not called.
        let hit = pass.get(a, &[1], |_| -> Result<Memory, ()> {
            panic!("decoded a hit")
        });
        assert_eq!(hit.unwrap().content, "first");
        // Different bytes under the same id: decoded again, never the stale memory.
        assert_eq!(
            pass.get(a, &[1, 9], decode_as("second")).unwrap().content,
            "second"
        );
        assert_eq!(pass.decoded, 1);
        cache.finish(pass);
        assert_eq!(cache.len(), 1, "b was not seen in the second pass");
    }

    #[test]
    fn a_failed_decode_is_returned_and_not_kept() {
        let a = Ulid::from_parts(1, 1);
        let mut cache = DecodedMemories::default();
        let mut pass = cache.begin();
        assert!(pass.get(a, &[1], |_| Err::<Memory, _>("bad")).is_err());
        cache.finish(pass);
        assert_eq!(cache.len(), 0);
    }
}
