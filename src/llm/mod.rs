//! The LLM advisor (SPEC.md §5): an optional step of the tick that may annotate, veto or
//! reorder the entries the rules propose, behind layers that save model calls:
//! 1. templates: questions the data answers never reach the model (the agent makes them:
//!    see `agent::advise`);
//! 2. the exact cache and 3. the numeric-slot cache ([`cache`]);
//! 4. compression: whitespace and repeated context removed, the token budget
//!    ([`prompt`]);
//! 5. batching: the questions of a tick go as one call of up to `llm.batch_max` with a
//!    structured reply, split back by id; an unusable batch reply is asked again one question
//!    at a time, never answered with a placeholder. The tick is the only caller and its
//!    questions arrive together, so there is no waiting window (SPEC's 1 s): one would only
//!    delay the tick;
//! 6. persistence: every cached answer is a [`CacheWrite`] the tick commits to the store's
//!    LLM cache table with its outbox row, reloaded by [`Advisor::open`].
//!
//! Invariants: the model's reply is untrusted: parsed into bounded [`Advice`] or refused
//! ([`reply`]); a question without an answer (a timeout, a failure, a refused reply) is left
//! to the rules alone; one consultation never waits longer than `llm.timeout` in all.

pub mod cache;
pub mod client;
pub mod mock;
pub mod prompt;
pub mod reply;
pub mod stats;

pub use cache::{CacheEntry, CacheWrite};
pub use prompt::{ContextLine, Question, Shared, Slot, SlotField, Template};
pub use reply::{Advice, Verdict};
pub use stats::LlmStats;

use athena_config::{Config, LlmConfig};
use athena_storage::{OutboxOp, Store, StoreError, WriteTx, hex};
use cache::{AnswerCache, Hit, Key};
use client::{Call, CallError, Client};
use prompt::{Rendered, estimate_tokens};
use reply::ReplyError;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The collection cached answers are mirrored to.
pub const CACHE_COLLECTION: &str = "llm_cache";

/// Which layer gave an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdviceSource {
    /// The data answered it (no cache, no model).
    Template,
    /// The exact cache.
    ExactCache,
    /// The numeric-slot cache.
    SlotCache,
    /// The model, this tick.
    Model,
}

impl AdviceSource {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Template => "template",
            Self::ExactCache => "exact_cache",
            Self::SlotCache => "slot_cache",
            Self::Model => "model",
        }
    }
}

/// An answer and where it came from (journaled with the decision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    /// Which layer answered.
    pub source: AdviceSource,
    /// The answer.
    #[serde(flatten)]
    pub advice: Advice,
}

/// Why the model gave no usable answer to a call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// No reply within `llm.timeout` (the llm_timeout breaker counts it).
    #[error("llm timed out")]
    Timeout,
    /// The endpoint failed, or its reply was refused (api_failures counts it).
    #[error("llm failed: {0}")]
    Failed(String),
}

/// What one consultation gave.
#[derive(Debug, Default)]
pub struct Consultation {
    /// One per question, in order: `None` leaves it to the rules.
    pub answers: Vec<Option<Answered>>,
    /// Failures met (each counts against its breaker).
    pub failures: Vec<Failure>,
    /// Cache changes to commit with the tick.
    pub writes: Vec<CacheWrite>,
    /// Wall time it took, µs.
    pub micros: u64,
}

/// The advisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The LLM cache table could not be read or written.
    #[error("llm cache: {0}")]
    Store(#[from] StoreError),
}

/// A question waiting for the model.
struct Pending {
    index: usize,
    rendered: Rendered,
    exact: Key,
}

/// The advisor.
pub struct Advisor {
    config: LlmConfig,
    client: Client,
    cache: AnswerCache,
    stats: LlmStats,
}

impl Advisor {
    /// The advisor of `config` with its cache reloaded from `store` (entries expired at
    /// `now_ms` are removed from it).
    pub fn open(config: &Config, store: &Store, now_ms: u64) -> Result<Self, LlmError> {
        let llm = &config.llm;
        let key = config
            .secrets
            .llm_api_key
            .as_ref()
            .map(|s| s.expose().to_string());
        let client = Client::new(&llm.endpoint, &llm.model, key, llm.max_retries);
        Self::with_client(llm, client, store, now_ms)
    }

    /// The advisor with its `client` (tests: an endpoint of their own).
    pub fn with_client(
        llm: &LlmConfig,
        client: Client,
        store: &Store,
        now_ms: u64,
    ) -> Result<Self, LlmError> {
        let mut cache = AnswerCache::new(llm);
        let entries: Vec<(Vec<u8>, CacheEntry)> = store.read(|r| r.llm_cache_all())?;
        for (_, entry) in entries {
            cache.load(entry);
        }
        let expired = cache.expire(now_ms);
        if !expired.is_empty() {
            store.write(|w| persist(w, &expired, now_ms))?;
        }
        Ok(Self {
            config: llm.clone(),
            client,
            cache,
            stats: LlmStats::default(),
        })
    }

    /// Counts since start, and the answers cached now.
    pub fn stats(&self) -> LlmStats {
        LlmStats {
            cached_entries: self.cache.len() as u64,
            ..self.stats
        }
    }

    /// The configuration it runs under.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Answered cached entries held.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Counts a question the data answered (layer 1).
    pub fn answered_by_template(&mut self) {
        self.stats.questions += 1;
        self.stats.template.hits += 1;
    }

    /// Counts questions left to the rules without asking (the llm_timeout breaker).
    pub fn skipped(&mut self, questions: usize) {
        self.stats.questions += questions as u64;
        self.stats.unanswered += questions as u64;
    }

    /// Answers `questions` (with `shared` context) through the caches and the model, within
    /// `llm.timeout`.
    pub fn consult(
        &mut self,
        shared: &Shared,
        questions: &[Question],
        now_ms: u64,
    ) -> Consultation {
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        let mut out = Consultation {
            answers: vec![None; questions.len()],
            writes: self.cache.expire(now_ms),
            ..Consultation::default()
        };
        self.stats.questions += questions.len() as u64;
        self.stats.template.misses += questions.len() as u64;
        let shared_tokens = estimate_tokens(&prompt::single(
            shared,
            &Rendered {
                text: String::new(),
                tokens_saved: 0,
            },
        ));
        let budget = (self.config.token_budget as u64)
            .saturating_sub(estimate_tokens(prompt::SYSTEM) + shared_tokens)
            .max(1) as u32;
        let mut pending = Vec::new();
        for (index, q) in questions.iter().enumerate() {
            let rendered = q.render(budget);
            if rendered.tokens_saved > 0 {
                self.stats.compression.hits += 1;
                self.stats.compression.tokens_saved += rendered.tokens_saved;
                self.stats.compression.usd_saved += self.prompt_usd(rendered.tokens_saved);
            } else {
                self.stats.compression.misses += 1;
            }
            let exact = self.cache.exact_key(q, &rendered.text);
            match self.cache.lookup(q, &exact, now_ms) {
                Some((hit, entry)) => {
                    let (source, layer) = match hit {
                        Hit::Exact => (AdviceSource::ExactCache, &mut self.stats.exact),
                        Hit::Slot => {
                            self.stats.exact.misses += 1;
                            (AdviceSource::SlotCache, &mut self.stats.slot)
                        }
                    };
                    layer.hits += 1;
                    layer.tokens_saved += entry.tokens;
                    layer.usd_saved += entry.usd;
                    out.answers[index] = Some(Answered {
                        source,
                        advice: entry.advice.clone(),
                    });
                }
                None => {
                    self.stats.exact.misses += 1;
                    self.stats.slot.misses += 1;
                    pending.push(Pending {
                        index,
                        rendered,
                        exact,
                    });
                }
            }
        }
        for batch in self.batches(shared, pending) {
            if out.failures.iter().any(|f| matches!(f, Failure::Timeout)) {
                break;
            }
            self.ask(shared, questions, batch, deadline, now_ms, &mut out);
        }
        for a in out.answers.iter() {
            match a {
                None => self.stats.unanswered += 1,
                Some(a) if a.advice.verdict == Verdict::Veto => self.stats.vetoes += 1,
                Some(_) => {}
            }
        }
        out.micros = started.elapsed().as_micros() as u64;
        out
    }

    /// Groups `pending` into calls of at most `llm.batch_max` questions within the token
    /// budget.
    fn batches(&self, shared: &Shared, pending: Vec<Pending>) -> Vec<Vec<Pending>> {
        let mut out: Vec<Vec<Pending>> = Vec::new();
        let max = self.config.batch_max.max(1) as usize;
        for p in pending {
            let fits = out.last().is_some_and(|b| {
                let mut texts: Vec<&Rendered> = b.iter().map(|p| &p.rendered).collect();
                texts.push(&p.rendered);
                b.len() < max
                    && estimate_tokens(prompt::SYSTEM)
                        + estimate_tokens(&prompt::batch(shared, &texts))
                        <= u64::from(self.config.token_budget)
            });
            match out.last_mut() {
                Some(b) if fits => b.push(p),
                _ => out.push(vec![p]),
            }
        }
        out
    }

    /// Asks the model one batch (one call; a single question without the batch wrapper);
    /// an unusable batch reply is asked again one question at a time.
    fn ask(
        &mut self,
        shared: &Shared,
        questions: &[Question],
        batch: Vec<Pending>,
        deadline: Instant,
        now_ms: u64,
        out: &mut Consultation,
    ) {
        if batch.len() > 1 {
            let texts: Vec<&Rendered> = batch.iter().map(|p| &p.rendered).collect();
            let user = prompt::batch(shared, &texts);
            let singles: u64 = texts
                .iter()
                .map(|t| {
                    estimate_tokens(prompt::SYSTEM) + estimate_tokens(&prompt::single(shared, t))
                })
                .sum();
            let call = Call {
                system: prompt::SYSTEM.into(),
                user,
                schema: reply::batch_schema(batch.len()),
                max_tokens: self.config.max_reply_tokens * batch.len() as u32,
            };
            match self.call(&call, deadline) {
                Err(f) => return out.failures.push(f),
                Ok(answer) => match reply::parse_batch(&answer.text, batch.len()) {
                    Ok(advices) => {
                        let saved = singles.saturating_sub(
                            estimate_tokens(prompt::SYSTEM) + estimate_tokens(&call.user),
                        );
                        self.stats.batching.hits += batch.len() as u64;
                        self.stats.batching.tokens_saved += saved;
                        self.stats.batching.usd_saved += self.prompt_usd(saved);
                        self.stats.model.batched_calls += 1;
                        let share = batch.len() as u64;
                        for (p, advice) in batch.into_iter().zip(advices) {
                            self.answered(questions, p, advice, &answer, share, now_ms, out);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "llm batch reply unusable; asking one by one");
                        self.stats.model.batch_fallbacks += 1;
                    }
                },
            }
        } else {
            self.stats.batching.misses += 1;
        }
        for p in batch {
            let call = Call {
                system: prompt::SYSTEM.into(),
                user: prompt::single(shared, &p.rendered),
                schema: reply::single_schema(),
                max_tokens: self.config.max_reply_tokens,
            };
            match self.call(&call, deadline) {
                Err(f) => {
                    // The endpoint is failing: the rest is left to the rules this tick.
                    out.failures.push(f);
                    return;
                }
                Ok(answer) => match reply::parse_single(&answer.text) {
                    Ok(advice) => self.answered(questions, p, advice, &answer, 1, now_ms, out),
                    Err(e) => out.failures.push(self.refused(&e)),
                },
            }
        }
    }

    /// One call, with its accounting.
    fn call(&mut self, call: &Call, deadline: Instant) -> Result<client::Answer, Failure> {
        let started = Instant::now();
        let result = self.client.complete(call, deadline);
        self.stats.model.wait_ms += started.elapsed().as_millis() as u64;
        match result {
            Ok(answer) => {
                self.stats.model.calls += 1;
                self.stats.model.prompt_tokens += answer.prompt_tokens;
                self.stats.model.reply_tokens += answer.reply_tokens;
                self.stats.model.usd_spent += self.usd(answer.prompt_tokens, answer.reply_tokens);
                Ok(answer)
            }
            Err(CallError::Timeout) => {
                self.stats.model.timeouts += 1;
                Err(Failure::Timeout)
            }
            Err(e) => {
                self.stats.model.failures += 1;
                Err(Failure::Failed(e.to_string()))
            }
        }
    }

    /// A reply that parsed badly: a failure of the endpoint's (api_failures counts it).
    fn refused(&mut self, e: &ReplyError) -> Failure {
        self.stats.model.failures += 1;
        Failure::Failed(format!("reply refused: {e}"))
    }

    /// Records the model's `advice` for pending question `p` (`share` questions shared the
    /// call's cost) and caches it.
    #[allow(clippy::too_many_arguments)]
    fn answered(
        &mut self,
        questions: &[Question],
        p: Pending,
        advice: Advice,
        answer: &client::Answer,
        share: u64,
        now_ms: u64,
        out: &mut Consultation,
    ) {
        let q = &questions[p.index];
        self.stats.model.answers += 1;
        let tokens = (answer.prompt_tokens + answer.reply_tokens) / share.max(1);
        let usd = self.usd(answer.prompt_tokens, answer.reply_tokens) / share.max(1) as f64;
        out.writes.extend(self.cache.insert(CacheEntry {
            exact: p.exact,
            slot_key: self.cache.slot_key(q),
            slots: q.slots.clone(),
            words: q.words(),
            advice: advice.clone(),
            created_ms: now_ms,
            tokens,
            usd,
        }));
        out.answers[p.index] = Some(Answered {
            source: AdviceSource::Model,
            advice,
        });
    }

    fn prompt_usd(&self, tokens: u64) -> f64 {
        self.usd(tokens, 0)
    }

    fn usd(&self, prompt: u64, reply: u64) -> f64 {
        (prompt as f64 * self.config.usd_per_million_prompt_tokens
            + reply as f64 * self.config.usd_per_million_reply_tokens)
            / 1e6
    }
}

/// Commits cache changes in the tick's transaction, each with its outbox row.
pub fn persist(w: &mut WriteTx<'_>, writes: &[CacheWrite], now_ms: u64) -> Result<(), StoreError> {
    for write in writes {
        match write {
            CacheWrite::Put(entry) => {
                w.put_llm_cache(&entry.exact, entry.as_ref())?;
                w.outbox_append(
                    OutboxOp::upsert(CACHE_COLLECTION, hex(&entry.exact), entry.as_ref())?,
                    now_ms,
                )?;
            }
            CacheWrite::Remove(key) => {
                if w.remove_llm_cache(key)? {
                    w.outbox_append(
                        OutboxOp::Delete {
                            collection: CACHE_COLLECTION.into(),
                            doc: hex(key),
                        },
                        now_ms,
                    )?;
                }
            }
        }
    }
    Ok(())
}
