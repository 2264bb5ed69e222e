//! `flowpilot worker`: the long-running consumer of the work queue.
//!
//! - [`handler`]: one message → load, drain outbox, decide, commit, execute (docs/architecture.md, "The outbox").
//! - [`shell`]: executing effects against AWS ([`shell::Shell`] is the test seam).
//! - [`poller`]: receive, group per workflow, dispatch with a concurrency bound, acknowledge.
//! - [`message`]: one parsed message → the handler (shared with `flowpilot lambda`).
//! - [`inflight`]: visibility extension of in-flight messages and their release on shutdown.
//! - [`locks`]: per-workflow async mutexes (one workflow at a time per process).
//! - [`server`]: `/healthz` and `/metrics`.
//! - [`ticker`]: the optional in-process reconcile-all pass (`FLOWPILOT_RECONCILE_EVERY`).
//!
//! Shutdown (SIGTERM/SIGINT, or the token passed to [`run`]): pollers stop receiving; in-flight
//! messages get `shutdown_grace` to finish; whatever is unfinished then is made visible again
//! at once for another replica. Abandoning a handler mid-way is safe by construction: state
//! and pending effects are committed before effects run, and effects are idempotent.

pub mod handler;
pub mod inflight;
mod known;
pub mod locks;
pub mod message;
pub mod poller;
pub mod server;
pub mod shell;
pub mod ticker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aws::appflow::AppFlow;
use crate::aws::health::HealthPublisher;
use crate::aws::profiles::Profiles;
use crate::aws::queue::Queue;
use crate::aws::{self, Clients};
use crate::config::WorkerConfig;
use crate::metrics::Metrics;
use crate::store::dynamo::DynamoStore;
use handler::Handler;
use inflight::InFlight;
use poller::Dispatch;
use shell::AwsShell;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "cannot serve metrics on {addr}: {source} (set FLOWPILOT_METRICS_ADDR to a free address, or `off`)"
    )]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The handler over the real store and shell, and the work queue: the same wiring for the ECS
/// worker and the Lambda function (src/lambda), so both modes decide and act alike.
pub fn wire(
    config: &WorkerConfig,
    clients: &Clients,
    metrics: &Arc<Metrics>,
) -> (Queue, Arc<Handler<DynamoStore, AwsShell>>) {
    let queue = Queue::new(clients.sqs.clone(), &config.queue_url);
    let store = Arc::new(DynamoStore::new(clients.dynamodb.clone(), &config.table));
    let shell = Arc::new(AwsShell {
        appflow: AppFlow::new(clients.appflow.clone()),
        profiles: Profiles::new(clients.profiles.clone()),
        health: HealthPublisher::new(clients.events.clone(), &config.health_bus)
            .coalesced(config.batch_linger),
        queue: queue.clone(),
        metrics: Arc::clone(metrics),
        budget: config.budget.clone().map(|limits| {
            crate::budget::RunBudget::new(clients.dynamodb.clone(), &config.table, limits)
        }),
        managed_role_arn: config.managed_role_arn.clone(),
    });
    let handler = Arc::new(Handler::new(
        store,
        shell,
        config.policy.clone(),
        Arc::clone(metrics),
    ));
    (queue, handler)
}

/// Runs the worker until `shutdown` is cancelled, then drains within the grace period.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let metrics = Metrics::new();
    let sdk = aws::sdk_config().await;
    let clients = Clients::new(&sdk, &metrics);
    let (queue, handler) = wire(&config, &clients, &metrics);

    // Background helpers (HTTP endpoint, visibility extender) stop after the drain.
    let helpers_stop = CancellationToken::new();
    if let Some(addr) = config.metrics_addr {
        let bound = server::serve(
            addr,
            Arc::clone(&metrics),
            shutdown.clone(),
            helpers_stop.clone(),
        )
        .await
        .map_err(|source| WorkerError::Metrics { addr, source })?;
        tracing::info!(addr = %bound, "serving /healthz and /metrics on http://{bound}");
    }
    let inflight = InFlight::new();
    let extender = tokio::spawn(inflight::extend_visibility(
        Arc::clone(&inflight),
        queue.clone(),
        helpers_stop.clone(),
    ));

    let hard_stop = CancellationToken::new();
    let pressure = Arc::new(crate::aws::coalesce::Pressure::default());
    let dispatch = Arc::new(Dispatch {
        handler,
        queue: poller::CoalescedQueue::new(
            queue.clone(),
            config.delete_linger,
            Arc::clone(&pressure),
            config.concurrency,
        ),
        metrics: Arc::clone(&metrics),
        inflight: Arc::clone(&inflight),
        permits: Arc::new(Semaphore::new(config.concurrency)),
        pressure,
        shutdown: shutdown.clone(),
        hard_stop: hard_stop.clone(),
    });
    let tasks = TaskTracker::new();
    let pollers = TaskTracker::new();
    for p in 0..config.pollers {
        pollers.spawn(Arc::clone(&dispatch).poll(p, tasks.clone()));
    }
    // Tracked with the pollers: the drain below waits for a pass in progress too.
    if let Some(every) = config.reconcile_every {
        pollers.spawn(ticker::run(
            Arc::clone(&dispatch.handler),
            Arc::clone(&metrics),
            every,
            shutdown.clone(),
            hard_stop.clone(),
        ));
    }
    pollers.close();
    // Writes what handlers deferred once a workflow goes quiet (see `known`).
    let flusher = {
        let handler = Arc::clone(&dispatch.handler);
        let stop = helpers_stop.clone();
        let idle = config.flush_after;
        tokio::spawn(async move {
            let tick = (idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(tick) => handler.flush_idle(idle).await,
                }
            }
        })
    };
    tracing::info!(
        queue = %config.queue_url,
        table = %config.table,
        pollers = config.pollers,
        concurrency = config.concurrency,
        reconcile_every = ?config.reconcile_every,
        "worker started"
    );

    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    tracing::info!(
        in_flight = inflight.count(),
        grace = ?config.shutdown_grace,
        "shutting down: no new messages; waiting for in-flight work"
    );
    // Pollers first (their last receive may still hand groups to `tasks`), then the groups.
    let drained = tokio::time::timeout_at(deadline, async {
        pollers.wait().await;
        tasks.close();
        tasks.wait().await;
    })
    .await
    .is_ok();
    if !drained {
        hard_stop.cancel();
        tracing::warn!("shutdown grace period over; releasing unfinished messages");
    }
    let released = inflight.release_all(&queue).await;
    helpers_stop.cancel();
    let _ = extender.await;
    let _ = flusher.await;
    // What handlers deferred goes into the store before the process ends (a crash would only
    // make the next drain run those effects again).
    dispatch.handler.flush_idle(Duration::ZERO).await;
    tracing::info!(released, "worker stopped");
    Ok(())
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => tracing::info!("SIGINT received"),
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the worker");
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}
