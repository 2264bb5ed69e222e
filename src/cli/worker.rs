//! `flowpilot worker`: run the queue consumer until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{RawConfig, WorkerConfig};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// TOML file with the same settings (lowercase keys without the FLOWPILOT_ prefix, e.g.
    /// `queue_url`, `pollers`); flags and environment variables override it.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: RawConfig,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let shutdown = CancellationToken::new();
    crate::worker::cancel_on_signals(shutdown.clone());
    crate::worker::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The validated settings (flags > environment > file); invalid ones are usage errors.
pub fn config(args: &WorkerArgs) -> anyhow::Result<WorkerConfig> {
    let file = match &args.config {
        Some(path) => RawConfig::from_file(path).map_err(|e| super::UsageError(e.to_string()))?,
        None => RawConfig::default(),
    };
    Ok(WorkerConfig::from_raw(&args.settings.clone().over(file))
        .map_err(|e| super::UsageError(e.to_string()))?)
}
