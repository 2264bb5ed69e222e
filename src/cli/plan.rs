//! `flowpilot workflow plan` (placeholder until the core lands).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: super::spec_args::SpecArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: PlanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("workflow plan is not built yet")
}
