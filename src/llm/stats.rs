//! What the advisor's layers saved and what the model cost, since the process started: hits
//! and misses per layer, tokens and dollars saved, calls, tokens and dollars spent, failures.
//! Exported on `/metrics` (`athena_llm_*`), `/performance/llm` and the dashboard.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One layer's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LayerStats {
    /// Questions this layer answered (templates, caches) or served (compression: prompts
    /// shortened; batching: questions that shared a call).
    pub hits: u64,
    /// Questions that went past it.
    pub misses: u64,
    /// Tokens it saved (a cache hit saves what the cached answer cost).
    pub tokens_saved: u64,
    /// Dollars it saved, at the configured list prices.
    pub usd_saved: f64,
}

/// The model's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelStats {
    /// Calls that got a reply.
    pub calls: u64,
    /// Of them, with more than one question.
    pub batched_calls: u64,
    /// Batch replies unusable (malformed, an item missing) and asked again one by one.
    pub batch_fallbacks: u64,
    /// Questions the model answered.
    pub answers: u64,
    /// Prompt tokens the endpoint counted.
    pub prompt_tokens: u64,
    /// Reply tokens.
    pub reply_tokens: u64,
    /// Dollars spent, at the configured list prices.
    pub usd_spent: f64,
    /// Calls that timed out (fed to the llm_timeout breaker).
    pub timeouts: u64,
    /// Calls that failed otherwise, or whose reply was refused (fed to api_failures).
    pub failures: u64,
    /// Time spent waiting for the model, ms.
    pub wait_ms: u64,
}

/// Everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LlmStats {
    /// Entry proposals put to the advisor.
    pub questions: u64,
    /// Layer 1: questions the data answers (never reach a cache or the model).
    pub template: LayerStats,
    /// Layer 2: exact cache.
    pub exact: LayerStats,
    /// Layer 3: numeric-slot cache.
    pub slot: LayerStats,
    /// Layer 4: compression.
    pub compression: LayerStats,
    /// Layer 5: batching.
    pub batching: LayerStats,
    /// The model.
    pub model: ModelStats,
    /// Questions left to the rules alone (a failure, a timeout, the llm_timeout breaker).
    pub unanswered: u64,
    /// Vetoes given (any layer).
    pub vetoes: u64,
    /// Answers cached now (memory and store).
    pub cached_entries: u64,
}

impl LlmStats {
    /// Share of questions answered without a model call (templates and caches), 0–1.
    pub fn hit_rate(&self) -> f64 {
        let served = self.template.hits + self.exact.hits + self.slot.hits;
        if self.questions == 0 {
            return 0.0;
        }
        served as f64 / self.questions as f64
    }
}
