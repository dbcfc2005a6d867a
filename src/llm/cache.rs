//! The advisor's answer caches, in front of the model:
//! - exact: key = SHA-256 of the model, the request parameters, the template and its version,
//!   and the canonical (compressed) prompt;
//! - numeric slot: key = SHA-256 of the model, the parameters, the template and the question's
//!   exact fields; a hit needs every number within its field's tolerance and on the same side
//!   of zero, and the free text (digit-free) alike to `llm.similarity_threshold`.
//!
//! Both are one bounded map (`llm.cache_entries`, oldest evicted first) whose entries expire
//! after `llm.cache_ttl` of agent time. Every insert and eviction is returned as a
//! [`CacheWrite`] the tick commits to the store's LLM cache table with its outbox row; the
//! cache is reloaded from that table at start.

use super::prompt::{Question, Slot, Tolerance, similarity};
use super::reply::Advice;
use athena_config::{LlmConfig, SlotTolerance};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

/// A cache key (SHA-256).
pub type Key = [u8; 32];

/// A cached answer as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Its exact key (also the store key).
    pub exact: Key,
    /// Its numeric-slot key.
    pub slot_key: Key,
    /// The question's numbers.
    pub slots: Vec<Slot>,
    /// The question's free-text words.
    pub words: Vec<String>,
    /// The answer.
    pub advice: Advice,
    /// When it was answered, agent ms.
    pub created_ms: u64,
    /// Tokens the answer cost (its share of the call): what a hit saves.
    pub tokens: u64,
    /// Dollars it cost.
    pub usd: f64,
}

/// A change to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheWrite {
    /// Store this entry.
    Put(Box<CacheEntry>),
    /// Remove the entry of this key.
    Remove(Key),
}

/// Which cache served an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The same prompt.
    Exact,
    /// The same template and fields, every number within tolerance.
    Slot,
}

/// The two caches.
pub struct AnswerCache {
    entries: HashMap<Key, CacheEntry>,
    by_slot: HashMap<Key, Vec<Key>>,
    by_age: BTreeSet<(u64, Key)>,
    params: String,
    ttl_ms: u64,
    capacity: usize,
    tolerance: SlotTolerance,
    threshold: f64,
}

impl AnswerCache {
    /// An empty cache under `config`.
    pub fn new(config: &LlmConfig) -> Self {
        Self {
            entries: HashMap::new(),
            by_slot: HashMap::new(),
            by_age: BTreeSet::new(),
            params: format!(
                "{}|temperature=0|max_tokens={}|template_version={}",
                config.model,
                config.max_reply_tokens,
                super::prompt::TEMPLATE_VERSION
            ),
            ttl_ms: config.cache_ttl.as_millis() as u64,
            capacity: config.cache_entries.max(1) as usize,
            tolerance: config.tolerance.clone(),
            threshold: config.similarity_threshold,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The exact key of `question` rendered as `prompt`.
    pub fn exact_key(&self, question: &Question, prompt: &str) -> Key {
        digest(&[
            self.params.as_bytes(),
            question.template.as_str().as_bytes(),
            prompt.as_bytes(),
        ])
    }

    /// The numeric-slot key of `question`: its template, exact fields and which numbers it has.
    pub fn slot_key(&self, question: &Question) -> Key {
        let mut parts: Vec<Vec<u8>> = vec![
            self.params.clone().into_bytes(),
            question.template.as_str().as_bytes().to_vec(),
        ];
        for (k, v) in &question.exact {
            parts.push(format!("{k}={v}").into_bytes());
        }
        for s in &question.slots {
            parts.push(s.field.as_str().as_bytes().to_vec());
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        digest(&refs)
    }

    /// A cached answer for `question` (exact key `exact`), if one is live at `now_ms`.
    pub fn lookup(
        &self,
        question: &Question,
        exact: &Key,
        now_ms: u64,
    ) -> Option<(Hit, &CacheEntry)> {
        if let Some(e) = self.entries.get(exact).filter(|e| self.live(e, now_ms)) {
            return Some((Hit::Exact, e));
        }
        let words = question.words();
        self.by_slot
            .get(&self.slot_key(question))?
            .iter()
            .filter_map(|k| self.entries.get(k))
            .filter(|e| self.live(e, now_ms))
            .find(|e| {
                slots_match(&e.slots, &question.slots, &self.tolerance)
                    && similarity(&e.words, &words) >= self.threshold
            })
            .map(|e| (Hit::Slot, e))
    }

    fn live(&self, e: &CacheEntry, now_ms: u64) -> bool {
        now_ms.saturating_sub(e.created_ms) < self.ttl_ms
    }

    /// Caches `entry`; returns what to persist (the entry, and the oldest evicted to stay
    /// within capacity).
    pub fn insert(&mut self, entry: CacheEntry) -> Vec<CacheWrite> {
        let mut writes = Vec::new();
        if let Some(old) = self.entries.get(&entry.exact).cloned() {
            self.unlink(&old);
        }
        while self.entries.len() >= self.capacity {
            let Some(&(_, oldest)) = self.by_age.iter().next() else {
                break;
            };
            if let Some(old) = self.entries.get(&oldest).cloned() {
                self.unlink(&old);
            }
            writes.push(CacheWrite::Remove(oldest));
        }
        writes.push(CacheWrite::Put(Box::new(entry.clone())));
        self.link(entry);
        writes
    }

    /// Loads an entry read from the store (no write back).
    pub fn load(&mut self, entry: CacheEntry) {
        self.link(entry);
    }

    /// Removes the entries expired at `now_ms`; returns their removals to persist.
    pub fn expire(&mut self, now_ms: u64) -> Vec<CacheWrite> {
        let dead: Vec<CacheEntry> = self
            .entries
            .values()
            .filter(|e| !self.live(e, now_ms))
            .cloned()
            .collect();
        dead.iter()
            .map(|e| {
                self.unlink(e);
                CacheWrite::Remove(e.exact)
            })
            .collect()
    }

    fn link(&mut self, entry: CacheEntry) {
        self.by_slot
            .entry(entry.slot_key)
            .or_default()
            .push(entry.exact);
        self.by_age.insert((entry.created_ms, entry.exact));
        self.entries.insert(entry.exact, entry);
    }

    fn unlink(&mut self, e: &CacheEntry) {
        self.entries.remove(&e.exact);
        self.by_age.remove(&(e.created_ms, e.exact));
        if let Some(keys) = self.by_slot.get_mut(&e.slot_key) {
            keys.retain(|k| k != &e.exact);
            if keys.is_empty() {
                self.by_slot.remove(&e.slot_key);
            }
        }
    }
}

fn digest(parts: &[&[u8]]) -> Key {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so no two part lists hash alike.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Which side of zero a number is on: −1, 0 or 1.
fn side(v: f64) -> i8 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

/// Whether `cached` may answer for `asked`: the same fields in the same order, every number
/// finite, on the same side of zero and within its field's tolerance.
pub fn slots_match(cached: &[Slot], asked: &[Slot], tolerance: &SlotTolerance) -> bool {
    cached.len() == asked.len()
        && cached.iter().zip(asked).all(|(c, a)| {
            c.field == a.field
                && c.value.is_finite()
                && a.value.is_finite()
                && side(c.value) == side(a.value)
                && match c.field.tolerance(tolerance) {
                    Tolerance::Absolute(t) => (c.value - a.value).abs() <= t,
                    // Against the smaller value: within the tolerance of either one.
                    Tolerance::Relative(t) => {
                        (c.value - a.value).abs() <= t * c.value.abs().min(a.value.abs())
                    }
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::prompt::{SlotField, Template};
    use crate::llm::reply::Verdict;
    use proptest::prelude::*;

    fn question(apr: f64, change: f64) -> Question {
        Question::new(
            Template::EntryReview,
            vec![("action", "open".into()), ("pool", "p".into())],
            vec![
                Slot {
                    field: SlotField::AprPct,
                    value: apr,
                },
                Slot {
                    field: SlotField::AprChangePct,
                    value: change,
                },
            ],
            Vec::new(),
        )
    }

    fn entry(cache: &AnswerCache, q: &Question, at: u64) -> CacheEntry {
        let prompt = q.render(2000).text;
        CacheEntry {
            exact: cache.exact_key(q, &prompt),
            slot_key: cache.slot_key(q),
            slots: q.slots.clone(),
            words: q.words(),
            advice: Advice {
                verdict: Verdict::Approve,
                size_factor: 1.0,
                priority: 5,
                reason: String::new(),
            },
            created_ms: at,
            tokens: 100,
            usd: 0.0,
        }
    }

    fn hit(cache: &AnswerCache, q: &Question, now: u64) -> Option<Hit> {
        let exact = cache.exact_key(q, &q.render(2000).text);
        cache.lookup(q, &exact, now).map(|(h, _)| h)
    }

    #[test]
    fn exact_then_slot_then_miss() {
        let mut c = AnswerCache::new(&LlmConfig::default());
        let q = question(12.0, 0.5);
        c.insert(entry(&c, &q, 0));
        assert_eq!(hit(&c, &q, 1), Some(Hit::Exact));
        assert_eq!(hit(&c, &question(12.2, 0.4), 1), Some(Hit::Slot));
        assert_eq!(
            hit(&c, &question(12.3, 0.5), 1),
            None,
            "APR 0.3 points away"
        );
        assert_eq!(
            hit(&c, &question(12.0, -0.1), 1),
            None,
            "the change flipped sign"
        );
        assert_eq!(hit(&c, &q, 86_400_000), None, "expired");
    }

    #[test]
    fn capacity_evicts_the_oldest_and_says_so() {
        let mut config = LlmConfig::default();
        config.cache_entries = 2;
        let mut c = AnswerCache::new(&config);
        let (a, b, d) = (question(1.0, 1.0), question(5.0, 1.0), question(9.0, 1.0));
        c.insert(entry(&c, &a, 0));
        c.insert(entry(&c, &b, 1));
        let oldest = entry(&c, &a, 0).exact;
        let writes = c.insert(entry(&c, &d, 2));
        assert_eq!(writes[0], CacheWrite::Remove(oldest));
        assert_eq!(c.len(), 2);
        assert_eq!(hit(&c, &a, 3), None);
        assert_eq!(hit(&c, &d, 3), Some(Hit::Exact));
        assert_eq!(c.expire(86_400_002).len(), 2);
        assert!(c.is_empty());
    }

    proptest! {
        /// Whatever the tolerances, a slot hit never crosses a sign change and never serves a
        /// number further away than its tolerance.
        #[test]
        fn a_slot_hit_is_within_tolerance_and_never_across_zero(
            a in -50.0f64..50.0, b in -50.0f64..50.0, tol in 0.0f64..10.0,
        ) {
            let t = SlotTolerance { apr_change_pct: tol, tvl_usd: tol / 10.0, ..SlotTolerance::default() };
            let slot = |field, value| Slot { field, value };
            for field in [SlotField::AprChangePct, SlotField::TvlUsd] {
                if slots_match(&[slot(field, a)], &[slot(field, b)], &t) {
                    prop_assert_eq!(side(a), side(b));
                    let allowed = match field.tolerance(&t) {
                        Tolerance::Absolute(x) => x,
                        Tolerance::Relative(x) => x * a.abs().min(b.abs()),
                    };
                    prop_assert!((a - b).abs() <= allowed);
                }
            }
        }
    }
}
