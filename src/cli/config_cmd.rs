//! `athena config check|show`.

use super::{Cli, Exit};
use athena_config::ConfigError;
use clap::Subcommand;

/// Configuration commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print every problem with its key path.
    Check,
    /// Print the effective configuration (file + environment), secrets redacted.
    Show,
}

pub(super) fn run(cli: &Cli, cmd: &ConfigCommand) -> anyhow::Result<()> {
    let origin = super::config_origin(cli);
    let config = match athena_config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(ConfigError::Invalid(problems)) => {
            let mut msg = format!("{origin}: {} problem(s)", problems.len());
            for p in problems {
                msg.push_str(&format!("\n  {p}"));
            }
            return Err(Exit {
                code: 2,
                message: msg,
            }
            .into());
        }
        Err(e) => {
            return Err(Exit {
                code: 2,
                message: format!("error: {e}"),
            }
            .into());
        }
    };
    match cmd {
        ConfigCommand::Check => outln!("{origin}: configuration is valid"),
        ConfigCommand::Show => {
            let mut config = config;
            if let Some(dir) = &cli.data_dir {
                config.agent.data_dir = dir.clone();
            }
            use std::io::Write as _;
            write!(std::io::stdout().lock(), "{}", config.to_redacted_toml())?;
        }
    }
    Ok(())
}
