//! Store verification: every record's header and checksum, every dictionary a record names,
//! and the consistency of the memory indexes with the records. redb's own page-level check is
//! [`Store::check_integrity`]; `athena store verify` runs both.

use crate::codec::{Codec, CodecError};
use crate::error::Result;
use crate::memory::Memory;
use crate::memory::cold::{ColdEntry, SegmentInfo};
use crate::store::Store;
use crate::tables::{self, KeyedTable, SeqTable};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use ulid::Ulid;

/// One record that failed verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptRecord {
    /// Table.
    pub table: String,
    /// Key, rendered.
    pub key: String,
    /// What failed.
    pub reason: String,
}

/// What verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Records that failed.
    pub corrupt: Vec<CorruptRecord>,
    /// Index entries without a record, or records without their index entries.
    pub index_problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing failed.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.index_problems.is_empty()
    }
}

type Check<'a> = dyn Fn(&[u8]) -> std::result::Result<(), CodecError> + 'a;

impl Store {
    /// Verifies every record and the memory indexes.
    pub fn verify_records(&self) -> Result<VerifyReport> {
        let read = self.db.begin_read()?;
        let mut report = VerifyReport::default();
        let codec = &*self.codec;
        let decodes = |raw: &[u8]| record_intact(codec, raw);
        let mut memories: Vec<Memory> = Vec::new();
        {
            let t = read.open_table(tables::MEMORIES)?;
            for row in t.iter()? {
                let (k, v) = row?;
                report.records += 1;
                match codec.decode::<Memory>(v.value()) {
                    Ok(m) if u128::from(m.id) == k.value() => memories.push(m),
                    Ok(m) => report.corrupt.push(bad(
                        "memories",
                        Ulid(k.value()),
                        format!("holds memory {}", m.id),
                    )),
                    Err(e) => report.corrupt.push(bad("memories", Ulid(k.value()), e)),
                }
            }
        }
        let typed_cold = |raw: &[u8]| codec.decode::<ColdEntry>(raw).map(|_| ());
        let typed_segment = |raw: &[u8]| codec.decode::<SegmentInfo>(raw).map(|_| ());
        scan(
            &read,
            tables::COLD_INDEX,
            |k| Ulid(k).to_string(),
            &typed_cold,
            &mut report,
        )?;
        scan(
            &read,
            tables::COLD_SEGMENTS,
            |k| k.to_string(),
            &typed_segment,
            &mut report,
        )?;
        for t in KeyedTable::ALL {
            scan(&read, t.def(), |k| k.to_string(), &decodes, &mut report)?;
        }
        for t in SeqTable::ALL {
            scan(&read, t.def(), |k| k.to_string(), &decodes, &mut report)?;
        }
        scan(&read, tables::LLM_CACHE, hex, &decodes, &mut report)?;
        let meta_records = |raw: &[u8]| Codec::verify(raw).map(|_| ());
        {
            let t = read.open_table(tables::META)?;
            for row in t.range("dict/"..)? {
                let (k, v) = row?;
                if !k.value().starts_with("dict/") {
                    break;
                }
                report.records += 1;
                if let Err(e) = meta_records(v.value()) {
                    report.corrupt.push(bad("meta", k.value(), e));
                }
            }
        }
        check_indexes(&read, &memories, &mut report)?;
        Ok(report)
    }
}

fn bad(table: &str, key: impl std::fmt::Display, reason: impl std::fmt::Display) -> CorruptRecord {
    CorruptRecord {
        table: table.to_string(),
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Whether a stored record's header, checksum and dictionary are sound (its content is not
/// decoded into a type).
pub(crate) fn record_intact(codec: &Codec, raw: &[u8]) -> std::result::Result<(), CodecError> {
    let (header, _) = codec.decode_bytes(raw)?;
    if header.dictionary != 0 && !codec.has_dictionary(header.dictionary) {
        return Err(CodecError::MissingDictionary(header.dictionary));
    }
    Ok(())
}

/// Bytes as lowercase hex (keys of the LLM cache, digests).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn scan<K: redb::Key + 'static>(
    read: &redb::ReadTransaction,
    def: TableDefinition<K, &'static [u8]>,
    key: impl for<'a> Fn(K::SelfType<'a>) -> String,
    check: &Check<'_>,
    report: &mut VerifyReport,
) -> Result<()> {
    let name = redb::TableHandle::name(&def).to_string();
    let t = read.open_table(def)?;
    for row in t.iter()? {
        let (k, v) = row?;
        report.records += 1;
        if let Err(e) = check(v.value()) {
            report.corrupt.push(bad(&name, key(k.value()), e));
        }
    }
    Ok(())
}

fn check_indexes(
    read: &redb::ReadTransaction,
    memories: &[Memory],
    report: &mut VerifyReport,
) -> Result<()> {
    let mut want_cat = BTreeSet::new();
    let mut want_pool = BTreeSet::new();
    let mut want_pattern = BTreeSet::new();
    for m in memories {
        let id = u128::from(m.id);
        want_cat.insert((m.category.index(), m.created_ms, id));
        if let Some(p) = &m.metadata.pool {
            want_pool.insert((p.clone(), m.created_ms, id));
        }
        if let Some(p) = &m.metadata.pattern_key {
            want_pattern.insert((p.clone(), id));
        }
    }
    let mut have_cat = BTreeSet::new();
    for row in read.open_table(tables::MEM_BY_CATEGORY)?.iter()? {
        have_cat.insert(row?.0.value());
    }
    let mut have_pool = BTreeSet::new();
    for row in read.open_table(tables::MEM_BY_POOL)?.iter()? {
        let (k, _) = row?;
        let (p, t, id) = k.value();
        have_pool.insert((p.to_string(), t, id));
    }
    let mut have_pattern = BTreeSet::new();
    for row in read.open_table(tables::MEM_BY_PATTERN)?.iter()? {
        let (k, _) = row?;
        let (p, id) = k.value();
        have_pattern.insert((p.to_string(), id));
    }
    let mut diff =
        |name: &str, want_n: usize, have_n: usize, missing: Vec<String>, stray: Vec<String>| {
            if want_n != have_n || !missing.is_empty() || !stray.is_empty() {
                for m in missing.iter().take(20) {
                    report
                        .index_problems
                        .push(format!("{name}: memory {m} has no index entry"));
                }
                for s in stray.iter().take(20) {
                    report
                        .index_problems
                        .push(format!("{name}: entry for {s} points at no memory"));
                }
            }
        };
    let ids = |v: Vec<u128>| {
        v.into_iter()
            .map(|i| Ulid(i).to_string())
            .collect::<Vec<_>>()
    };
    diff(
        "idx_memory_category_time",
        want_cat.len(),
        have_cat.len(),
        ids(want_cat.difference(&have_cat).map(|e| e.2).collect()),
        ids(have_cat.difference(&want_cat).map(|e| e.2).collect()),
    );
    diff(
        "idx_memory_pool_time",
        want_pool.len(),
        have_pool.len(),
        ids(want_pool.difference(&have_pool).map(|e| e.2).collect()),
        ids(have_pool.difference(&want_pool).map(|e| e.2).collect()),
    );
    diff(
        "idx_memory_pattern",
        want_pattern.len(),
        have_pattern.len(),
        ids(want_pattern
            .difference(&have_pattern)
            .map(|e| e.1)
            .collect()),
        ids(have_pattern
            .difference(&want_pattern)
            .map(|e| e.1)
            .collect()),
    );
    Ok(())
}
