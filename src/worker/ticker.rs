//! The in-process reconcile ticker (`FLOWPILOT_RECONCILE_EVERY`).
//!
//! In production EventBridge Scheduler sends the global `reconcile` command every few minutes
//! and whichever replica receives it runs the pass. Where nothing sends that command (a local
//! stack: moto does not run schedules) the worker can run the very same pass on a timer. Several
//! replicas ticking at once is harmless: every write is conditional, so concurrent passes only
//! cost conflicts, never a double start.
//!
//! Shutdown: no new pass starts once `shutdown` is cancelled, and a running pass stops between
//! workflows; `hard_stop` (the grace period ran out) abandons it mid-workflow, which is safe for
//! the same reason abandoning a message handler is (DESIGN.md §4.1).

use std::sync::Arc;
use std::time::Duration;

use flowpilot_core::input::Input;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::handler::Handler;
use super::shell::Shell;
use crate::metrics::{self, Metrics};
use crate::store::Store;

/// Runs a reconcile-all pass every `every` until `shutdown`.
pub async fn run<S: Store, X: Shell>(
    handler: Arc<Handler<S, X>>,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) {
    // A random first delay spreads replicas started together over the period, so their passes
    // do not all hit the store at the same instant.
    let first = every.mul_f64(fastrand::f64());
    let mut ticks = tokio::time::interval_at(Instant::now() + first, every);
    // A pass slower than the period delays the next one instead of causing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(?every, "reconcile ticker started");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let pass = pass(&handler, &shutdown);
        let outcome = tokio::select! {
            _ = hard_stop.cancelled() => break,
            o = pass => o,
        };
        let result = match outcome {
            Ok(Pass {
                workflows,
                failures: 0,
            }) => {
                tracing::debug!(workflows, "reconcile pass done");
                "ok"
            }
            Ok(Pass {
                workflows,
                failures,
            }) => {
                tracing::warn!(workflows, failures, "reconcile pass: some workflows did not reconcile");
                "partial"
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconcile pass could not list active workflows");
                "error"
            }
        };
        metrics.inc_with(metrics::RECONCILE_PASSES, &[("result", result)]);
    }
    tracing::info!("reconcile ticker stopped");
}

struct Pass {
    workflows: usize,
    failures: usize,
}

/// [`Handler::reconcile_all`], except that it stops between workflows once `stop` is cancelled.
async fn pass<S: Store, X: Shell>(
    handler: &Handler<S, X>,
    stop: &CancellationToken,
) -> Result<Pass, crate::store::StoreError> {
    let active = handler.store().list_active().await?;
    let mut done = Pass {
        workflows: 0,
        failures: 0,
    };
    for wf in active {
        if stop.is_cancelled() {
            break;
        }
        done.workflows += 1;
        if let Err(e) = handler.handle(&wf.id, Input::Reconcile).await {
            tracing::warn!(workflow_id = %wf.id, error = %e, "reconcile failed");
            done.failures += 1;
        }
    }
    Ok(done)
}
