//! The advisor's questions: every prompt comes from a versioned template, with its numbers
//! held as typed slots (never inside text), its identity as exact fields (pool, action,
//! tokens) and a little free text without digits. Rendering, canonical form, token estimate
//! and compression (whitespace, repeated context, the token budget) live here.
//!
//! Invariants: a number reaches the model only through a slot, rendered at its field's fixed
//! precision; free text never holds a digit (they are removed), so text similarity can never
//! stand in for a number.

use athena_config::SlotTolerance;
use serde::{Deserialize, Serialize};

/// Version of the templates: part of every cache key, so a changed wording never serves an
/// answer to the old one.
pub const TEMPLATE_VERSION: u32 = 1;

/// A question the advisor is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// Should the agent enter this pool (an open, or a rebalance into it)?
    EntryReview,
}

impl Template {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntryReview => "entry_review",
        }
    }
}

/// A numeric field of a prompt (a closed set: each has its tolerance in `[llm.tolerance]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotField {
    /// Pool APR, percent.
    AprPct,
    /// APR against the pool's own running mean, percentage points (signed).
    AprChangePct,
    /// TVL, USD.
    TvlUsd,
    /// 24 h volume, USD.
    VolumeUsd,
    /// Entry gas, USD.
    GasUsd,
    /// Pool price against the market, percent.
    PriceGapPct,
    /// Positions held.
    Positions,
}

/// How a slot's tolerance reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// `|a − b| ≤ t`.
    Absolute(f64),
    /// `|a − b| ≤ t · min(|a|, |b|)`: within `t` of either value.
    Relative(f64),
}

impl SlotField {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AprPct => "apr_pct",
            Self::AprChangePct => "apr_change_pct",
            Self::TvlUsd => "tvl_usd",
            Self::VolumeUsd => "volume_usd",
            Self::GasUsd => "gas_usd",
            Self::PriceGapPct => "price_gap_pct",
            Self::Positions => "positions",
        }
    }

    /// Its tolerance under `t`.
    pub fn tolerance(self, t: &SlotTolerance) -> Tolerance {
        match self {
            Self::AprPct => Tolerance::Relative(t.apr_pct),
            Self::AprChangePct => Tolerance::Absolute(t.apr_change_pct),
            Self::TvlUsd => Tolerance::Relative(t.tvl_usd),
            Self::VolumeUsd => Tolerance::Relative(t.volume_usd),
            Self::GasUsd => Tolerance::Absolute(t.gas_usd),
            Self::PriceGapPct => Tolerance::Absolute(t.price_gap_pct),
            Self::Positions => Tolerance::Absolute(t.positions),
        }
    }

    /// The line the model reads.
    fn render(self, v: f64) -> String {
        match self {
            Self::AprPct => format!("APR: {v:.2}%"),
            Self::AprChangePct => format!("APR against the pool's mean: {v:+.2} points"),
            Self::TvlUsd => format!("TVL: ${v:.0}"),
            Self::VolumeUsd => format!("24h volume: ${v:.0}"),
            Self::GasUsd => format!("entry gas: ${v:.2}"),
            Self::PriceGapPct => format!("price against the market: {v:.2}%"),
            Self::Positions => format!("positions held: {v:.0}"),
        }
    }
}

/// A number of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Which field.
    pub field: SlotField,
    /// Its value.
    pub value: f64,
}

/// A line of free-text context, with how much it matters (higher is kept longer under the
/// token budget).
#[derive(Debug, Clone, PartialEq)]
pub struct ContextLine {
    /// The text (digits are removed when the question is made).
    pub text: String,
    /// Relevance, higher first.
    pub relevance: u8,
}

/// One question for the advisor.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Its template.
    pub template: Template,
    /// Exact fields (name, value): an answer is served only to the same ones.
    pub exact: Vec<(&'static str, String)>,
    /// Its numbers.
    pub slots: Vec<Slot>,
    /// Free-text context.
    pub context: Vec<ContextLine>,
}

/// Context lines shared by every question of a tick (sent once per call).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shared {
    /// The lines.
    pub lines: Vec<ContextLine>,
}

impl Question {
    /// A question of `template` about `exact`, with `slots` and free-text `context` (its
    /// digits removed, its whitespace normalised, repeated lines dropped).
    pub fn new(
        template: Template,
        exact: Vec<(&'static str, String)>,
        slots: Vec<Slot>,
        context: Vec<ContextLine>,
    ) -> Self {
        let mut lines: Vec<ContextLine> = Vec::new();
        for mut line in context {
            line.text = free_text(&line.text);
            if !line.text.is_empty() && !lines.iter().any(|l| l.text == line.text) {
                lines.push(line);
            }
        }
        Self {
            template,
            exact,
            slots,
            context: lines,
        }
    }

    /// The question's own lines (exact fields, slots, then context), compressed to fit
    /// `budget` tokens: the least relevant context goes first; fields and slots always stay.
    pub fn render(&self, budget: u32) -> Rendered {
        let head: Vec<String> = self
            .exact
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .chain(self.slots.iter().map(|s| s.field.render(s.value)))
            .collect();
        let full = lines_of(&head, &self.context);
        let mut kept = self.context.clone();
        while estimate_tokens(&lines_of(&head, &kept)) > u64::from(budget) && !kept.is_empty() {
            let least = (0..kept.len())
                .min_by_key(|&i| (kept[i].relevance, std::cmp::Reverse(i)))
                .expect("not empty");
            kept.remove(least);
        }
        let text = lines_of(&head, &kept);
        Rendered {
            tokens_saved: estimate_tokens(&full).saturating_sub(estimate_tokens(&text)),
            text,
        }
    }

    /// The free-text words, for the similarity check of the numeric-slot cache.
    pub fn words(&self) -> Vec<String> {
        let mut words: Vec<String> = self
            .context
            .iter()
            .flat_map(|l| l.text.split_whitespace())
            .map(str::to_lowercase)
            .collect();
        words.sort();
        words.dedup();
        words
    }
}

/// A question's prompt text after compression.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// Tokens the compression removed (estimated).
    pub tokens_saved: u64,
}

fn lines_of(head: &[String], context: &[ContextLine]) -> String {
    let mut out = head.join("\n");
    for l in context {
        out.push_str("\n- ");
        out.push_str(&l.text);
    }
    out
}

/// Free text as the prompt holds it: digits removed, whitespace runs collapsed.
pub fn free_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_ascii_digit() && !c.is_numeric())
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tokens a text costs, estimated at four bytes a token (the reply's `usage` gives the
/// real count of what was sent).
pub fn estimate_tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4)
}

/// Word overlap of two free texts (Jaccard on their word sets; 1 when both are empty).
pub fn similarity(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let common = a.iter().filter(|w| b.binary_search(w).is_ok()).count();
    common as f64 / (a.len() + b.len() - common) as f64
}

/// The system prompt: what the advisor is and how it answers.
pub const SYSTEM: &str = "You review liquidity-provision proposals for a trading agent. A risk gate checks every answer. Reply with JSON only: verdict \"approve\" or \"veto\", size_factor from 0.25 to 1 (1 keeps the size the rules chose), priority from 1 to 10 (10 goes first), reason in a few words.";

/// The user prompt of one question, with the shared context first.
pub fn single(shared: &Shared, q: &Rendered) -> String {
    let mut out = shared_block(shared);
    out.push_str("Proposal:\n");
    out.push_str(&q.text);
    out
}

/// The user prompt of several questions in one call: the shared context once, then each
/// question with its id.
pub fn batch(shared: &Shared, qs: &[&Rendered]) -> String {
    let mut out = shared_block(shared);
    out.push_str(&format!(
        "Answer each of these {} proposals, by id, in \"answers\".\n",
        qs.len()
    ));
    for (id, q) in qs.iter().enumerate() {
        out.push_str(&format!("Proposal id {id}:\n{}\n", q.text));
    }
    out
}

fn shared_block(shared: &Shared) -> String {
    if shared.lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("Context:\n");
    for l in &shared.lines {
        out.push_str("- ");
        out.push_str(&l.text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(context: &[(&str, u8)]) -> Question {
        Question::new(
            Template::EntryReview,
            vec![("action", "open".into()), ("pool", "usdc-weth".into())],
            vec![Slot {
                field: SlotField::AprPct,
                value: 12.345,
            }],
            context
                .iter()
                .map(|(t, r)| ContextLine {
                    text: (*t).into(),
                    relevance: *r,
                })
                .collect(),
        )
    }

    #[test]
    fn free_text_has_no_digits_and_no_repeats() {
        let q = q(&[
            ("last  close:  loss of $12.5", 2),
            ("last close: loss of $.", 1),
        ]);
        assert_eq!(
            q.context.len(),
            1,
            "the second line repeats the first once digits go"
        );
        assert_eq!(q.context[0].text, "last close: loss of $.");
    }

    #[test]
    fn numbers_render_at_their_fields_precision() {
        let r = q(&[]).render(2000);
        assert_eq!(r.text, "action: open\npool: usdc-weth\nAPR: 12.35%");
        assert_eq!(r.tokens_saved, 0);
    }

    #[test]
    fn the_budget_drops_the_least_relevant_context_first_never_a_number() {
        let long = "word ".repeat(40);
        let q = q(&[(&long, 1), ("held tokens: usdc", 5)]);
        let r = q.render(20);
        assert!(r.text.contains("held tokens"));
        assert!(!r.text.contains("word"));
        assert!(r.text.contains("APR: 12.35%"));
        assert!(r.tokens_saved >= 40);
        // Nothing can go: the slots stay even over the budget.
        assert!(q.render(1).text.contains("APR"));
    }

    #[test]
    fn similarity_is_word_overlap() {
        let a = vec!["a".to_string(), "b".into()];
        let b = vec!["a".to_string(), "c".into()];
        assert_eq!(similarity(&a, &a), 1.0);
        assert!((similarity(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(similarity(&[], &[]), 1.0);
    }
}
