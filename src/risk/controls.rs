//! Emergency controls (SPEC.md §3): stop, resume, exit-all, breaker reset and limit override.
//! Each returns the journal entries to persist with the state; the CLI (`athena risk …`) and,
//! later, the HTTP API call these same functions.

use crate::risk::model::{PoolInfo, Portfolio, Proposal, ProposalKind};
use crate::risk::state::{Limit, LimitOverride, OperatorStop, RiskEvent, RiskJournal, RiskState};
use crate::risk::{BreakerKind, RiskEngine};

/// Longest an override may last: it always expires by itself.
pub const MAX_OVERRIDE_MS: u64 = 24 * 3_600_000;

/// Why a control was refused (bad input from an operator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn need_reason(reason: &str) -> Result<String, Refused> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(Refused("a reason is required".into()));
    }
    // A reason is printed in the journal, the CLI and the log: no escape sequences, line
    // breaks or bidirectional overrides that could forge or hide a line.
    if let Some(c) = r.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return Err(Refused(format!(
            "the reason holds a control character (U+{:04X}); use plain text on one line",
            u32::from(c)
        )));
    }
    Ok(r.to_string())
}

/// Unicode's bidirectional embedding, override and isolate controls.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

fn entry(at_ms: u64, event: RiskEvent) -> RiskJournal {
    RiskJournal { at_ms, event }
}

impl RiskEngine {
    /// Stop: halt now. The caller cancels pending intents in the same transaction.
    pub fn stop(
        &self,
        state: &mut RiskState,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<RiskJournal>, Refused> {
        let reason = need_reason(reason)?;
        state.operator_stop = Some(OperatorStop {
            at_ms: now_ms,
            reason: reason.clone(),
        });
        Ok(self.journaled(state, now_ms, RiskEvent::Stop { reason }, "operator stop"))
    }

    /// Resume: lift an operator stop and a restart hold. Breakers still tripped keep their
    /// effect: the state becomes what they imply.
    pub fn resume(
        &self,
        state: &mut RiskState,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<RiskJournal>, Refused> {
        let reason = need_reason(reason)?;
        state.operator_stop = None;
        state.restart_hold = None;
        Ok(self.journaled(
            state,
            now_ms,
            RiskEvent::Resume { reason },
            "operator resume",
        ))
    }

    /// Operator reset of one breaker (the only way to clear a latched one).
    pub fn reset(
        &self,
        state: &mut RiskState,
        breaker: BreakerKind,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<RiskJournal>, Refused> {
        let reason = need_reason(reason)?;
        let was_tripped = state.breaker_mut(breaker).reset(now_ms);
        let event = RiskEvent::Reset {
            breaker,
            reason,
            was_tripped,
        };
        let cause = format!("{} reset by an operator", breaker.as_str());
        Ok(self.journaled(state, now_ms, event, &cause))
    }

    /// The journal entry of a control, followed by the state change it causes, if any.
    fn journaled(
        &self,
        state: &mut RiskState,
        now_ms: u64,
        event: RiskEvent,
        cause: &str,
    ) -> Vec<RiskJournal> {
        let mut out = vec![entry(now_ms, event)];
        self.update_state(state, now_ms, cause, &mut out);
        out
    }

    /// Changes one limit for `for_ms` (at most [`MAX_OVERRIDE_MS`]); it expires by itself.
    /// A later override of the same limit replaces the earlier one.
    pub fn override_limit(
        &self,
        state: &mut RiskState,
        limit: Limit,
        value: f64,
        for_ms: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<Vec<RiskJournal>, Refused> {
        let reason = need_reason(reason)?;
        limit.check(value)?;
        if for_ms == 0 || for_ms > MAX_OVERRIDE_MS {
            return Err(Refused(format!(
                "an override lasts more than 0 and at most {} h",
                MAX_OVERRIDE_MS / 3_600_000
            )));
        }
        let change = LimitOverride {
            limit,
            value,
            at_ms: now_ms,
            until_ms: now_ms + for_ms,
            reason,
        };
        state.overrides.retain(|o| o.limit != limit);
        state.overrides.push(change.clone());
        Ok(vec![entry(now_ms, RiskEvent::Override { change })])
    }

    /// Exit-all: a close proposal for every position (into the stable asset), only with an
    /// explicit confirmation. Exits are never blocked, so each will be approved.
    pub fn exit_all(
        &self,
        portfolio: &Portfolio,
        confirm: bool,
        reason: &str,
        now_ms: u64,
    ) -> Result<(Vec<Proposal>, Vec<RiskJournal>), Refused> {
        let reason = need_reason(reason)?;
        if !confirm {
            return Err(Refused(format!(
                "exit-all closes all {} positions: it needs an explicit confirmation",
                portfolio.positions.len()
            )));
        }
        let proposals = portfolio
            .positions
            .iter()
            .map(|p| Proposal {
                kind: ProposalKind::Close {
                    position: p.id.clone(),
                },
                pool: PoolInfo {
                    id: p.pool.clone(),
                    tokens: p.tokens.clone(),
                    stable: p.stable,
                    tvl_usd: Some(p.pool_tvl_usd),
                    created_ms: None,
                    apr_variance: Some(p.apr_variance),
                },
                requested_usd: Some(p.value_usd),
                entry_gas_usd: None,
                expected_slippage_pct: None,
            })
            .collect();
        let journal = vec![entry(
            now_ms,
            RiskEvent::ExitAll {
                positions: portfolio.positions.iter().map(|p| p.id.clone()).collect(),
                reason,
            },
        )];
        Ok((proposals, journal))
    }
}

#[cfg(test)]
mod tests {
    use super::need_reason;

    #[test]
    fn a_reason_is_one_line_of_plain_text() {
        assert_eq!(need_reason("  venue down ").unwrap(), "venue down");
        assert!(need_reason("   ").is_err());
        for forged in [
            "a\nathena: stopped cleanly",
            "esc \u{1b}[31mRED",
            "nul \0",
            "rlo \u{202E}txt",
            "tab\tinside",
        ] {
            let refused = need_reason(forged).unwrap_err();
            assert!(
                refused.0.contains("control character"),
                "{forged:?}: {refused}"
            );
        }
        assert_eq!(need_reason("prix élevé ✓").unwrap(), "prix élevé ✓");
    }
}
