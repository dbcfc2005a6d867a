//! Athena: a single-node, crash-safe runtime for an autonomous liquidity-provision agent.
//!
//! The library holds the agent's modules; `src/main.rs` is a thin binary over [`cli`].
//! Dependency direction: `athena` → `athena-storage` → `athena-config`.

pub mod agent;
pub mod api;
pub mod app;
pub mod backtest;
pub mod chain;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod control;
pub mod journal;
pub mod live;
pub mod llm;
pub mod market;
pub mod monitor;
pub mod recovery;
pub mod risk;
pub mod series;
