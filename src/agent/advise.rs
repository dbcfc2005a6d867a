//! The advisor's step in the tick (SPEC.md §1, §5): the entries the rules propose (opens and
//! rebalances) are put to the LLM advisor, which may veto them, cap their size at a fraction
//! of the base size, or reorder them. Exits (closes, sweeps) are never put to it.
//!
//! Layer 1, the templates, lives here: questions the data answers never reach a cache or the
//! model: a compound (the rules' arithmetic already weighed its rewards against its gas) and
//! an entry the risk gate refuses whatever the advisor says.
//!
//! Invariants: the advisor only removes, shrinks or reorders entries; every answer still
//! passes the risk gate; a question without an answer is decided by the rules alone; while
//! the llm_timeout breaker is tripped the model is not asked.

use super::learn;
use super::strategy::{Intent, Proposed};
use super::{Agent, PoolSnapshot};
use crate::llm::{
    Advice, AdviceSource, Answered, CacheWrite, ContextLine, Failure, Question, Shared, Slot,
    SlotField, Template, Verdict,
};
use crate::market::MarketTick;
use crate::market::sim::GAS_UNITS_ENTRY;
use crate::risk::{BreakerKind, MarketView};
use athena_storage::Memory;

/// A proposal and what the advisor said of it.
#[derive(Debug, Clone)]
pub struct Advised {
    /// What the rules want done.
    pub proposed: Proposed,
    /// The advisor's answer, if it was asked and answered.
    pub advice: Option<Answered>,
}

/// What the step leaves for the tick's commit and the risk engine.
#[derive(Debug, Default)]
pub struct AdviceOutcome {
    /// Failures met (each one counts against its breaker).
    pub failures: Vec<Failure>,
    /// Cache changes, committed with the tick.
    pub writes: Vec<CacheWrite>,
    /// Memories the model's vetoes wrote (source: the LLM).
    pub memories: Vec<Memory>,
    /// Wall time of the step, µs.
    pub micros: u64,
    /// Questions put to the caches and the model this tick (templates not counted).
    pub asked: usize,
}

/// Whether the advisor is asked about `intent` at all.
fn is_entry(intent: &Intent) -> bool {
    matches!(
        intent,
        Intent::Open { .. } | Intent::Rebalance { .. } | Intent::Compound { .. }
    )
}

/// An answer of layer 1.
fn template_answer(reason: String) -> Answered {
    Answered {
        source: AdviceSource::Template,
        advice: Advice {
            verdict: Verdict::Approve,
            size_factor: 1.0,
            priority: 5,
            reason,
        },
    }
}

impl Agent {
    /// Puts the entries among `intents` to the advisor (when one is configured) and returns
    /// every proposal with its answer, entries reordered by the advisor's priority.
    pub(super) fn advise(
        &mut self,
        tick: &MarketTick,
        intents: Vec<Proposed>,
    ) -> (Vec<Advised>, AdviceOutcome) {
        let mut advised: Vec<Advised> = intents
            .into_iter()
            .map(|proposed| Advised {
                proposed,
                advice: None,
            })
            .collect();
        let mut outcome = AdviceOutcome::default();
        let Some(mut advisor) = self.advisor.take() else {
            return (advised, outcome);
        };
        let started = std::time::Instant::now();
        let entries: Vec<usize> = (0..advised.len())
            .filter(|&i| is_entry(&advised[i].proposed.intent))
            .collect();
        let rule_based_only = self
            .risk
            .breakers
            .iter()
            .any(|b| b.kind == BreakerKind::LlmTimeout && b.is_tripped(tick.at_ms));
        if rule_based_only {
            advisor.skipped(entries.len());
        } else {
            let mut asked: Vec<(usize, Question)> = Vec::new();
            for &i in &entries {
                match self.question_or_template(tick, &advised[i].proposed.intent) {
                    Ok(q) => asked.push((i, q)),
                    Err(answer) => {
                        advisor.answered_by_template();
                        advised[i].advice = Some(answer);
                    }
                }
            }
            if !asked.is_empty() {
                let questions: Vec<Question> = asked.iter().map(|(_, q)| q.clone()).collect();
                let consultation = advisor.consult(&self.shared_context(), &questions, tick.at_ms);
                for ((i, _), answer) in asked.iter().zip(consultation.answers) {
                    advised[*i].advice = answer;
                }
                outcome.failures = consultation.failures;
                outcome.asked = questions.len();
                outcome.writes = consultation.writes;
            }
        }
        self.advisor = Some(advisor);
        outcome.memories = self.veto_memories(tick, &advised);
        reorder_entries(&mut advised);
        outcome.micros = started.elapsed().as_micros() as u64;
        (advised, outcome)
    }

    /// The question for an entry, or the data's own answer (layer 1).
    fn question_or_template(
        &self,
        tick: &MarketTick,
        intent: &Intent,
    ) -> Result<Question, Answered> {
        let (action, pool, from) = match intent {
            Intent::Open { pool } => ("open", pool, None),
            Intent::Rebalance { from, to } => ("rebalance", to, Some(from)),
            _ => {
                return Err(template_answer(
                    "answered by the data: the rules weighed the rewards against the gas".into(),
                ));
            }
        };
        let (proposal, snapshot) = self.proposal_of(tick, intent, None);
        let market = MarketView {
            now_ms: tick.at_ms,
            gas_gwei: tick.gas_gwei,
        };
        let verdict = self
            .engine
            .assess(&self.risk, &proposal, &self.state.portfolio(), &market)
            .decision;
        if let crate::risk::Decision::Reject { rule, .. } = verdict {
            return Err(template_answer(format!(
                "answered by the data: the risk gate refuses it whatever the advice ({})",
                rule.as_str()
            )));
        }
        let Some(s) = snapshot else {
            return Err(template_answer(
                "answered by the data: the pool is not in this tick".into(),
            ));
        };
        let mut exact = vec![("action", action.to_string()), ("pool", pool.clone())];
        if let Some(from) = from {
            let from_pool = self.state.positions.iter().find(|p| &p.id == from);
            exact.push(("from", from_pool.map_or(from.clone(), |p| p.pool.clone())));
        }
        exact.push(("tokens", s.tokens.join("/")));
        exact.push(("kind", if s.stable { "stable" } else { "volatile" }.into()));
        Ok(Question::new(
            Template::EntryReview,
            exact,
            self.slots(tick, &s),
            self.context(tick, &s),
        ))
    }

    /// The numbers of an entry question.
    fn slots(&self, tick: &MarketTick, s: &PoolSnapshot) -> Vec<Slot> {
        let apr = s.apr_pct();
        let mean = self.state.profiles.get(&s.pool).map_or(apr, |p| p.apr_mean);
        let slot = |field, value| Slot { field, value };
        vec![
            slot(SlotField::AprPct, apr),
            slot(SlotField::AprChangePct, apr - mean),
            slot(SlotField::TvlUsd, s.tvl_usd),
            slot(SlotField::VolumeUsd, s.volume_24h_usd),
            slot(SlotField::GasUsd, tick.gas_usd(GAS_UNITS_ENTRY)),
            slot(SlotField::PriceGapPct, s.price_gap_pct),
            slot(SlotField::Positions, self.state.positions.len() as f64),
        ]
    }

    /// The free-text context of an entry question, most relevant first.
    fn context(&self, tick: &MarketTick, s: &PoolSnapshot) -> Vec<ContextLine> {
        let held: Vec<&str> = s
            .tokens
            .iter()
            .filter(|t| {
                self.state.positions.iter().any(|p| {
                    tick.pool(&p.pool)
                        .is_some_and(|held| held.tokens.contains(t))
                })
            })
            .map(String::as_str)
            .collect();
        let age_ms = tick.at_ms.saturating_sub(s.created_ms);
        let new_pool = age_ms < self.config.risk.new_pool_age.as_millis() as u64;
        vec![
            ContextLine {
                text: if held.is_empty() {
                    "none of its tokens is held in another position".into()
                } else {
                    format!("tokens also held in other positions: {}", held.join(", "))
                },
                relevance: 3,
            },
            ContextLine {
                text: if new_pool {
                    "a new pool, younger than the new-pool window".into()
                } else {
                    "an established pool".into()
                },
                relevance: 2,
            },
        ]
    }

    /// Context every question of the tick shares.
    fn shared_context(&self) -> Shared {
        let state = self.risk.computed_state(self.state.last_tick_ms);
        Shared {
            lines: vec![ContextLine {
                text: format!("trading state: {}", state.as_str()),
                relevance: 1,
            }],
        }
    }

    /// A learning memory (source: the LLM) for each entry the model itself vetoed this tick.
    fn veto_memories(&self, tick: &MarketTick, advised: &[Advised]) -> Vec<Memory> {
        advised
            .iter()
            .filter_map(|a| {
                let answer = a.advice.as_ref()?;
                let pool = match &a.proposed.intent {
                    Intent::Open { pool } | Intent::Rebalance { to: pool, .. } => pool,
                    _ => return None,
                };
                (answer.source == AdviceSource::Model && answer.advice.verdict == Verdict::Veto)
                    .then(|| {
                        learn::advisor_veto(
                            pool,
                            &answer.advice.reason,
                            tick.at_ms,
                            tick.index,
                            self.state.seed,
                        )
                    })
            })
            .collect()
    }
}

/// Sorts the opens and rebalances by the advisor's priority, highest first (unanswered ones
/// count as 5), in the places they held; everything else keeps its place.
fn reorder_entries(advised: &mut [Advised]) {
    let places: Vec<usize> = (0..advised.len())
        .filter(|&i| {
            matches!(
                advised[i].proposed.intent,
                Intent::Open { .. } | Intent::Rebalance { .. }
            )
        })
        .collect();
    let mut entries: Vec<Advised> = places.iter().map(|&i| advised[i].clone()).collect();
    entries.sort_by_key(|a| std::cmp::Reverse(a.advice.as_ref().map_or(5, |a| a.advice.priority)));
    for (place, entry) in places.into_iter().zip(entries) {
        advised[place] = entry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(pool: &str, priority: Option<u8>) -> Advised {
        Advised {
            proposed: Proposed {
                intent: Intent::Open { pool: pool.into() },
                rule: String::new(),
            },
            advice: priority.map(|priority| Answered {
                source: AdviceSource::Model,
                advice: Advice {
                    verdict: Verdict::Approve,
                    size_factor: 1.0,
                    priority,
                    reason: String::new(),
                },
            }),
        }
    }

    #[test]
    fn entries_are_reordered_by_priority_exits_keep_their_place() {
        let close = Advised {
            proposed: Proposed {
                intent: Intent::Close {
                    position: "p".into(),
                    reason: String::new(),
                    protection: None,
                },
                rule: String::new(),
            },
            advice: None,
        };
        let mut v = vec![
            close,
            open("a", Some(2)),
            open("b", None),
            open("c", Some(9)),
        ];
        reorder_entries(&mut v);
        let order: Vec<String> = v
            .iter()
            .map(|a| match &a.proposed.intent {
                Intent::Open { pool } => pool.clone(),
                _ => "close".into(),
            })
            .collect();
        assert_eq!(order, ["close", "c", "b", "a"]);
    }
}
