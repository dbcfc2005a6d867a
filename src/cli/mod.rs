//! The command line (clap). Only this module knows clap.
//!
//! Every command takes `--config FILE` and `--data-dir DIR`. Bad arguments and bad files get
//! one clear line on stderr and a non-zero exit: 2 for usage and configuration errors, 1 for a
//! failed operation or a check that found problems.

/// `println!` for command output that returns an error instead of panicking when stdout is
/// closed (`athena memory recall | head -1`); [`main`] ends such a run quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod agent_cmd;
mod checkpoint_cmd;
mod config_cmd;
mod journal_cmd;
mod memory_cmd;
mod remote;
mod risk_cmd;
mod store_cmd;
mod sync_cmd;

use anyhow::Context;
use athena_config::{Config, ConfigError};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Athena: autonomous liquidity-provision agent runtime.
#[derive(Debug, Parser)]
#[command(name = "athena", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: the embedded config/athena.toml; env ATHENA_CONFIG).
    #[arg(long, global = true, env = "ATHENA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory, overriding agent.data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: the recovery ladder, then the agent loop, pruning, the scrubber and sync.
    Run(RunArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Inspect and maintain agent memory.
    #[command(subcommand)]
    Memory(memory_cmd::MemoryCommand),
    /// Inspect and verify the local store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Inspect and drive the cloud sync.
    #[command(subcommand)]
    Sync(sync_cmd::SyncCommand),
    /// Replay a simulated market as fast as the machine allows and report.
    Backtest(agent_cmd::BacktestArgs),
    /// Trading state, positions, breakers and last tick, from the store (works while the
    /// agent runs).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Consistent snapshots for redundancy and restore.
    #[command(subcommand)]
    Checkpoint(checkpoint_cmd::CheckpointCommand),
    /// The market simulator.
    #[command(subcommand)]
    Sim(agent_cmd::SimCommand),
    /// Risk engine state and the operator's emergency controls.
    #[command(subcommand)]
    Risk(risk_cmd::RiskCommand),
    /// Decisions and risk events with their reasons (why a position was opened or closed, why
    /// a breaker tripped), newest first; read-only.
    Journal(journal_cmd::JournalArgs),
}

/// `athena run` options.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Start on an empty data directory from the cloud: the newest valid checkpoint in the
    /// object store (`gcs`) or a rebuild from the Firestore documents (`firestore`).
    #[arg(long, value_name = "SOURCE", value_parser = parse_cloud_source)]
    pub restore_from: Option<crate::recovery::sources::Source>,
}

fn parse_cloud_source(s: &str) -> Result<crate::recovery::sources::Source, String> {
    match s.parse()? {
        crate::recovery::sources::Source::Local => Err(
            "local is not a cloud source: a start with a store restores from local checkpoints by itself"
                .into(),
        ),
        other => Ok(other),
    }
}

pub use crate::clock::{MAX_ARG_DURATION, parse_duration_arg};

/// Parses `--days`: 1 to ten years' worth, so agent time never overflows the clock.
pub fn parse_days(s: &str) -> Result<u64, String> {
    let max = MAX_ARG_DURATION.as_secs() / 86_400;
    match s.parse::<u64>() {
        Ok(d) if (1..=max).contains(&d) => Ok(d),
        Ok(d) => Err(format!("must be in [1, {max}], got {d}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a `--limit`: a count of at least 1.
pub fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// An error that ends the command with a given exit code after printing its message.
#[derive(Debug)]
pub struct Exit {
    /// Process exit code.
    pub code: u8,
    /// One line (or a list of problems) for stderr; empty when already printed.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

impl Exit {
    /// Bad input from the operator: `error: message` and exit code 2.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: format!("error: {message}"),
        }
    }
}

/// Parses `std::env::args` and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see athena --help)");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): it has what it wanted; end quietly.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<Exit>() {
                if !exit.message.is_empty() {
                    eprintln!("{}", exit.message);
                }
                return ExitCode::from(exit.code);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("ATHENA_LOG").unwrap_or_else(|_| "warn".into());
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Config(c) => config_cmd::run(&cli, c),
        Command::Memory(c) => memory_cmd::run(&load_config(&cli)?, c),
        Command::Store(c) => store_cmd::run(&load_config(&cli)?, c),
        Command::Sync(c) => sync_cmd::run(&load_config(&cli)?, c),
        Command::Risk(c) => risk_cmd::run(&load_config(&cli)?, c),
        Command::Journal(a) => journal_cmd::run(&load_config(&cli)?, a),
        Command::Backtest(a) => agent_cmd::backtest(&load_config(&cli)?, a),
        Command::Status { json } => agent_cmd::status(&load_config(&cli)?, *json),
        Command::Sim(c) => agent_cmd::sim(&load_config(&cli)?, c),
        Command::Checkpoint(c) => checkpoint_cmd::run(&load_config(&cli)?, c),
        Command::Run(args) => {
            let config = load_config(&cli)?;
            let runtime = runtime()?;
            runtime.block_on(async {
                // First, before the recovery ladder: a signal during start-up is a clean stop.
                let stop = crate::app::signals::install().context("installing signal handlers")?;
                crate::app::run(config, args.restore_from, stop)
                    .await
                    .map_err(configuration_exit)
            })
        }
    }
}

/// A start refused for its configuration (an API without a token on a public address, a
/// short token) or a run stopped by it (a router that is not one) exits 2 like any other
/// configuration error.
fn configuration_exit(e: anyhow::Error) -> anyhow::Error {
    if let Some(start) = e.downcast_ref::<crate::api::StartError>()
        && start.is_configuration()
    {
        return Exit::usage(start).into();
    }
    match e.downcast_ref::<crate::agent::AgentError>() {
        Some(agent) if agent.is_configuration() => Exit::usage(agent).into(),
        _ => e,
    }
}

/// Loads and validates the configuration, applying `--data-dir`.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = athena_config::load(cli.config.as_deref())
        .map_err(|e| config_exit(&config_origin(cli), e))?;
    if let Some(dir) = &cli.data_dir {
        config.agent.data_dir = dir.clone();
    }
    Ok(config)
}

/// Where the configuration comes from, for its error messages: the file given, or the embedded
/// default (the `ATHENA_` variables' problems are named by the variable).
pub fn config_origin(cli: &Cli) -> String {
    cli.config.as_ref().map_or_else(
        || "the embedded default configuration".to_string(),
        |p| p.display().to_string(),
    )
}

fn config_exit(origin: &str, e: ConfigError) -> anyhow::Error {
    Exit {
        code: 2,
        message: format!("error: {origin}: {e}"),
    }
    .into()
}

/// Opens the store of `config`'s data directory.
pub fn open_store(config: &Config) -> anyhow::Result<athena_storage::Store> {
    crate::app::open_store(config).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "opening the store in {}",
            config.agent.data_dir.display()
        ))
    })
}

/// Opens for inspection without ever changing a byte of the file: read-only, or, for a store
/// left unclean by a crash (which a read-only open refuses), over an in-memory overlay where
/// redb's repair happens without touching the file (`athena run` repairs the file itself).
pub fn open_store_read_only(config: &Config) -> anyhow::Result<athena_storage::Store> {
    let dir = &config.agent.data_dir;
    let opened = match athena_storage::Store::open_read_only(dir, &config.memory) {
        Err(athena_storage::StoreError::Refused { reason, .. })
            if reason == athena_storage::NEEDS_REPAIR =>
        {
            eprintln!(
                "note: the store was not closed cleanly; reading it repaired in memory (the file is not changed)"
            );
            athena_storage::Store::open_overlay(dir, &config.memory)
        }
        other => other,
    };
    opened.with_context(|| format!("opening the store in {}", dir.display()))
}

/// The async runtime of the commands that talk to the cloud or run services.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The agent's time now, for commands on a stopped agent's store: the wall clock, or the
/// agent's last tick when its clock ran ahead of the wall (a simulated clock), so what a
/// command journals or measures never goes back in the agent's time.
pub fn agent_now_ms(config: &Config) -> u64 {
    use crate::agent::state::{AgentState, STATE_KEY};
    let last_tick = athena_storage::Store::open_read_only(&config.agent.data_dir, &config.memory)
        .ok()
        .and_then(|s| {
            s.read(|r| r.get::<AgentState>(athena_storage::KeyedTable::Agent, STATE_KEY))
                .ok()
                .flatten()
        })
        .map_or(0, |a| a.last_tick_ms);
    now_ms().max(last_tick)
}

/// Wall-clock now, ms (CLI commands act in real time).
pub fn now_ms() -> u64 {
    crate::clock::wall_ms()
}
