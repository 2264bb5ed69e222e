//! `flowpilot sim`: run the AppFlow + Customer Profiles simulator as a local process.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use flowpilot_sim::SimConfig;

/// Start the local AppFlow + Customer Profiles simulator (loopback only).
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Port to listen on; 0 picks a free one (the bound address is printed).
    #[arg(long)]
    pub port: Option<u16>,
    /// Loopback address to bind (non-loopback addresses are refused).
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Sim config file (JSON, or TOML when the name ends in .toml), including the fault plan.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Real milliseconds per scheduled-flow tick.
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Exit after this many milliseconds instead of waiting for SIGINT/SIGTERM.
    #[arg(long)]
    pub run_ms: Option<u64>,
    /// Seed for fault decisions and run durations.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not publish AppFlow run reports to EventBridge.
    #[arg(long)]
    pub no_events: bool,
    /// Load this IAM identity document (JSON: users, services, roles and their policies) at
    /// start; `POST /_sim/iam` replaces it later.
    #[arg(long, value_name = "FILE")]
    pub iam: Option<PathBuf>,
    /// Turn IAM enforcement off for experiments: every signed request is allowed (STS still
    /// mints keys). Never use it in tests, the demo or the benchmark.
    #[arg(long)]
    pub no_iam: bool,
}

fn load_config(path: &std::path::Path) -> anyhow::Result<SimConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sim config {}", path.display()))?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        toml::from_str(&text).with_context(|| format!("parsing TOML sim config {}", path.display()))
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("parsing JSON sim config {}", path.display()))
    }
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => load_config(p)?,
        None => SimConfig::default(),
    };
    if let Some(p) = args.port {
        config.port = p;
    }
    if let Some(b) = args.bind {
        config.bind = b;
    }
    if let Some(t) = args.tick_ms {
        config.tick_ms = t;
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    if args.no_events {
        config.events.disabled = true;
    }
    if let Some(path) = &args.iam {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading IAM identity document {}", path.display()))?;
        let doc = serde_json::from_str(&text)
            .with_context(|| format!("parsing IAM identity document {}", path.display()))?;
        config.iam.identities = Some(doc);
    }
    if args.no_iam {
        config.iam.enforce = false;
    }
    let handle = flowpilot_sim::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "flowpilot-sim listening on {}", handle.url())?;
        out.flush()?;
    }
    let deadline = async {
        match args.run_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = shutdown_signal() => r?,
        () = deadline => {}
    }
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
