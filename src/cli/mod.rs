//! Command-line interface. `main` is the only place that turns errors into exit codes:
//! 2 for invalid input (bad flags, bad spec), 1 for everything else.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod diagnose;
pub mod integration;
pub mod lambda;
pub mod plan;
pub mod spec_args;
pub mod worker;
pub mod workflow;

/// flowpilot runs AppFlow historical ingestion into Amazon Connect Customer Profiles in batches,
/// then keeps the continuous integration healthy.
///
/// AWS endpoints, region and credentials come from the standard AWS SDK configuration
/// (AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_APPFLOW, AWS_ENDPOINT_URL_CUSTOMER_PROFILES,
/// the credentials chain).
#[derive(Debug, Parser)]
#[command(name = "flowpilot", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr (level via RUST_LOG, default info for long-running commands, warn
    /// otherwise).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FLOWPILOT_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan, create and operate workflows.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Run the worker: consume the work queue until SIGTERM/SIGINT.
    Worker(Box<worker::WorkerArgs>),
    /// Run the worker as an AWS Lambda function (provided.al2023; SQS event source mapping with
    /// ReportBatchItemFailures). Takes the worker's settings; the poller, metrics endpoint,
    /// shutdown grace and reconcile ticker settings do not apply. A binary named `bootstrap`
    /// run without arguments does this.
    Lambda(Box<worker::WorkerArgs>),
    /// Operate a workflow's continuous integration.
    #[command(subcommand)]
    Integration(IntegrationCommand),
    /// Run the local AppFlow + Customer Profiles simulator (for tests and experiments).
    #[cfg(feature = "local")]
    Sim(crate::sim_cli::SimArgs),
    /// The whole product on the local stack in one command: stack, worker, a two-year
    /// Salesforce workflow with injected transient failures, progress, health events, ledger.
    #[cfg(feature = "local")]
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Delete and re-create the continuous integration, resuming where it last succeeded.
    Rebuild(workflow::IdArgs),
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Print the batch plan for a spec, without calling AWS.
    Plan(Box<plan::PlanArgs>),
    /// Store a workflow and send its start command.
    Create(Box<workflow::CreateArgs>),
    /// Show a workflow's progress (batches, records, errors).
    Status(workflow::StatusArgs),
    /// List workflows (active ones unless --all or --status says otherwise).
    List(workflow::ListArgs),
    /// Cancel a workflow (its running batches are cancelled and their flows deleted).
    Cancel(workflow::IdArgs),
    /// Resume a failed workflow from its failed batch; succeeded batches never re-run.
    Redrive(workflow::IdArgs),
    /// Why batches failed, lost records or wait, and the continuous flow's state, from the
    /// workflow and from AppFlow (flow details, execution records, connector profile), with
    /// one recommended next step and a command to paste for each.
    Diagnose(diagnose::DiagnoseArgs),
}

/// Errors that mean "the input was wrong" and exit with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn main() -> ExitCode {
    // Lambda's Init Duration starts before main; this is as early as flowpilot can look.
    let started = std::time::Instant::now();
    let cli = Cli::parse_from(lambda::args(std::env::args_os()));
    let default_level = match cli.command {
        Command::Worker(_) | Command::Lambda(_) => "info",
        #[cfg(feature = "local")]
        Command::Sim(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    // The worker and the Lambda handler wait on AWS almost all the time: one thread serves
    // them with fewer wake-ups and hand-offs between threads than a pool, which measurably
    // costs less CPU per message and shortens the critical path (docs/architecture.md,
    // "Performance"). The CLI and the local stack's commands keep the multi-threaded pool.
    let mut builder = match cli.command {
        Command::Worker(_) | Command::Lambda(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, started)) {
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

async fn run(cli: Cli, started: std::time::Instant) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Workflow(WorkflowCommand::Plan(args)) => plan::run(*args),
        Command::Workflow(WorkflowCommand::Create(args)) => workflow::create(*args).await,
        Command::Workflow(WorkflowCommand::Status(args)) => workflow::status(args).await,
        Command::Workflow(WorkflowCommand::List(args)) => workflow::list(args).await,
        Command::Workflow(WorkflowCommand::Cancel(args)) => workflow::cancel(args).await,
        Command::Workflow(WorkflowCommand::Redrive(args)) => workflow::redrive(args).await,
        Command::Workflow(WorkflowCommand::Diagnose(args)) => diagnose::run(args).await,
        Command::Integration(IntegrationCommand::Rebuild(args)) => integration::rebuild(args).await,
        Command::Worker(args) => worker::run(*args).await,
        Command::Lambda(args) => lambda::run(*args, started).await,
        #[cfg(feature = "local")]
        Command::Sim(args) => crate::sim_cli::run(args).await.map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "local")]
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

/// Logs go to stderr (stdout is for command output), filtered by RUST_LOG.
fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second initialisation (tests calling into the CLI) is not an error.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
