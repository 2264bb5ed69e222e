//! Command-line interface. `main` is the only place that turns errors into exit codes:
//! 2 for invalid input (bad flags, bad spec), 1 for everything else.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod plan;
pub mod spec_args;

/// flowpilot runs AppFlow historical ingestion into Amazon Connect Customer Profiles in batches,
/// then keeps the continuous integration healthy.
///
/// AWS endpoints, region and credentials come from the standard AWS SDK configuration
/// (AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_APPFLOW, AWS_ENDPOINT_URL_CUSTOMER_PROFILES,
/// the credentials chain).
#[derive(Debug, Parser)]
#[command(name = "flowpilot", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan, create and operate workflows.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Run the local AppFlow + Customer Profiles simulator (for tests and experiments).
    Sim(crate::sim_cli::SimArgs),
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Print the batch plan for a spec, without calling AWS.
    Plan(plan::PlanArgs),
}

/// Errors that mean "the input was wrong" and exit with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Workflow(WorkflowCommand::Plan(args)) => plan::run(args),
        Command::Sim(args) => crate::sim_cli::run(args).await.map(|()| ExitCode::SUCCESS),
    }
}
