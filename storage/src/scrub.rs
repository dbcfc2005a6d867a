//! The scrubber's store side: verifies stored records' checksums a slice at a time, resuming
//! from a cursor, so a background task can walk the whole store at a bounded rate without ever
//! holding a long read transaction. Each slice is its own read snapshot; records written after
//! the cursor passed their key are checked on the next round.

use crate::error::Result;
use crate::store::Store;
use crate::tables::{self, KeyedTable, SeqTable};
use crate::verify::{CorruptRecord, hex, record_intact};
use redb::{Key, ReadableTable, TableDefinition};
use std::ops::Bound;

/// Where a scrub round is: the table (by position in the scrub order) and the last key checked
/// in it, as redb's key bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubCursor {
    /// Table position in the scrub order.
    pub table: usize,
    /// Last key checked in that table (`None`: from its start).
    pub after: Option<Vec<u8>>,
    /// Completed rounds over every table.
    pub rounds: u64,
}

/// What a slice checked.
#[derive(Debug, Clone, Default)]
pub struct ScrubSlice {
    /// Records checked.
    pub records: u64,
    /// Records whose checksum or decoding failed.
    pub corrupt: Vec<CorruptRecord>,
}

/// Number of record tables in the scrub order.
const TABLES: usize = 4 + KeyedTable::ALL.len() + SeqTable::ALL.len();

impl Store {
    /// Verifies up to `budget` records from `cursor`, moving it forward; a slice stops at the
    /// end of a round (the cursor then wraps to the first table for the next one).
    pub fn scrub(&self, cursor: &mut ScrubCursor, budget: usize) -> Result<ScrubSlice> {
        let read = self.db.begin_read()?;
        let codec = &*self.codec;
        let check = |raw: &[u8]| record_intact(codec, raw);
        let mut slice = ScrubSlice::default();
        let mut left = budget.max(1);
        for _ in 0..TABLES {
            if left == 0 {
                break;
            }
            let i = cursor.table;
            let (done, last) = match i {
                0 => walk(
                    &read,
                    tables::MEMORIES,
                    id,
                    cursor,
                    left,
                    &check,
                    &mut slice,
                )?,
                1 => walk(
                    &read,
                    tables::COLD_INDEX,
                    id,
                    cursor,
                    left,
                    &check,
                    &mut slice,
                )?,
                2 => walk(
                    &read,
                    tables::COLD_SEGMENTS,
                    text,
                    cursor,
                    left,
                    &check,
                    &mut slice,
                )?,
                3 => walk(
                    &read,
                    tables::LLM_CACHE,
                    hex,
                    cursor,
                    left,
                    &check,
                    &mut slice,
                )?,
                i if i < 4 + KeyedTable::ALL.len() => {
                    let t = KeyedTable::ALL[i - 4];
                    walk(&read, t.def(), text, cursor, left, &check, &mut slice)?
                }
                i => {
                    let t = SeqTable::ALL[i - 4 - KeyedTable::ALL.len()];
                    walk(&read, t.def(), seq, cursor, left, &check, &mut slice)?
                }
            };
            left -= done;
            match last {
                Some(k) => cursor.after = Some(k),
                None => {
                    cursor.after = None;
                    cursor.table += 1;
                    if cursor.table == TABLES {
                        // A slice never spans two rounds: the caller sees each round end.
                        cursor.table = 0;
                        cursor.rounds += 1;
                        break;
                    }
                }
            }
        }
        Ok(slice)
    }
}

/// Checks up to `limit` records of one table after the cursor's key. Returns how many it
/// checked and the last key when the table may have more (`None` once it is finished).
fn walk<K: Key + 'static>(
    read: &redb::ReadTransaction,
    def: TableDefinition<K, &'static [u8]>,
    render: fn(&[u8]) -> String,
    cursor: &ScrubCursor,
    limit: usize,
    check: &dyn Fn(&[u8]) -> std::result::Result<(), crate::codec::CodecError>,
    slice: &mut ScrubSlice,
) -> Result<(usize, Option<Vec<u8>>)> {
    let name = redb::TableHandle::name(&def).to_string();
    let table = read.open_table(def)?;
    let rows = match &cursor.after {
        Some(bytes) => {
            let after = K::from_bytes(bytes);
            table.range::<K::SelfType<'_>>((Bound::Excluded(after), Bound::Unbounded))?
        }
        None => table.iter()?,
    };
    let mut done = 0;
    let mut last = None;
    for row in rows {
        if done == limit {
            return Ok((done, last));
        }
        let (k, v) = row?;
        let key_bytes = K::as_bytes(&k.value()).as_ref().to_vec();
        done += 1;
        slice.records += 1;
        if let Err(reason) = check(v.value()) {
            slice.corrupt.push(CorruptRecord {
                table: name.clone(),
                key: render(&key_bytes),
                reason: reason.to_string(),
            });
        }
        last = Some(key_bytes);
    }
    Ok((done, None))
}

fn id(bytes: &[u8]) -> String {
    ulid::Ulid(u128::from_le_bytes(bytes.try_into().unwrap_or([0; 16]))).to_string()
}

fn seq(bytes: &[u8]) -> String {
    u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])).to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
