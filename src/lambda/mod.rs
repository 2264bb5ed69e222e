//! `flowpilot lambda`: the worker as an AWS Lambda function behind an SQS event source mapping
//! (`WorkerMode: lambda` in infra/flowpilot.yaml).
//!
//! - [`batch`]: one invocation, an SQS batch → the same parse → handle path as the ECS poller
//!   → a partial batch response (`batchItemFailures`).
//! - [`runtime_env`]: the Runtime API environment Lambda provides, checked before the
//!   `lambda_runtime` crate would panic on it.
//!
//! The process is the execution environment: what is built before the first event (SDK
//! clients, the handler and what it remembers) serves every invocation until Lambda retires
//! the environment. Nothing runs between invocations (Lambda freezes the process), so there is
//! no poller, visibility extender, metrics endpoint or reconcile ticker: the mapping receives
//! and deletes, and the reconcile tick is the scheduled command, a queue message like any other.

pub mod batch;
pub mod runtime_env;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};

use crate::aws::{self, Clients};
use crate::config::WorkerConfig;
use crate::metrics::Metrics;
use batch::{Deadlines, Function};

#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error(transparent)]
    Environment(#[from] runtime_env::EnvError),
    /// The Runtime API went away or answered nonsense; Lambda starts a new environment.
    #[error("the Lambda runtime loop stopped: {0}")]
    Runtime(String),
}

/// Builds the function, reports the cold start, then serves invocations until the Runtime API
/// stops answering. `process_start`: taken first thing in `main`.
pub async fn run(config: WorkerConfig, process_start: Instant) -> Result<(), LambdaError> {
    runtime_env::check()?;
    let metrics = Metrics::new();
    let sdk = aws::sdk_config().await;
    let clients = Clients::new(&sdk, &metrics);
    let (queue, handler) = crate::worker::wire(&config, &clients, &metrics);
    let function = Arc::new(Function {
        handler,
        queue,
        metrics,
    });
    let init = process_start.elapsed();
    // Lambda's own REPORT line has the Init Duration too; this one is comparable across the
    // local runtime emulator and AWS.
    tracing::info!(
        init_ms = millis(init),
        "cold start: ready for the first event {:.1} ms after the process started",
        init.as_secs_f64() * 1000.0
    );
    let invocations = Arc::new(AtomicU64::new(0));
    let service = service_fn(move |event: LambdaEvent<SqsEvent>| {
        let function = Arc::clone(&function);
        let invocations = Arc::clone(&invocations);
        async move {
            let n = invocations.fetch_add(1, Ordering::Relaxed);
            Ok::<SqsBatchResponse, std::convert::Infallible>(invoke(&function, event, n == 0).await)
        }
    });
    lambda_runtime::Runtime::new(service)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
        .map_err(|e| LambdaError::Runtime(e.to_string()))
}

async fn invoke<S, X, Q>(
    function: &Function<S, X, Q>,
    event: LambdaEvent<SqsEvent>,
    first: bool,
) -> SqsBatchResponse
where
    S: crate::store::Store,
    X: crate::worker::shell::Shell,
    Q: batch::GiveBack,
{
    let started = Instant::now();
    let remaining = event
        .context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let response = function
        .handle_batch(event.payload, Deadlines::before(remaining))
        .await;
    if first {
        // The first invocation also pays for what the SDK resolves lazily (credentials,
        // connections): the rest of the cold start.
        tracing::info!(
            elapsed_ms = millis(started.elapsed()),
            "first invocation of this environment handled"
        );
    }
    response
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
