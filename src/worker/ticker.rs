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
//! the same reason abandoning a message handler is (docs/architecture.md, "The outbox").

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::handler::{Handler, Pass};
use super::shell::Shell;
use crate::aws::error_chain;
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
        let pass = handler.reconcile_all(&shutdown);
        let outcome = tokio::select! {
            _ = hard_stop.cancelled() => break,
            o = pass => o,
        };
        let result = match outcome {
            Ok(Pass {
                workflows,
                failures: 0,
                unreadable: 0,
            }) => {
                tracing::debug!(workflows, "reconcile pass done");
                "ok"
            }
            Ok(Pass {
                workflows,
                failures,
                unreadable,
            }) => {
                tracing::warn!(
                    workflows,
                    failures,
                    unreadable,
                    "reconcile pass: some workflows did not reconcile"
                );
                "partial"
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "reconcile pass could not list active workflows");
                "error"
            }
        };
        metrics.inc_with(metrics::RECONCILE_PASSES, &[("result", result)]);
    }
    tracing::info!("reconcile ticker stopped");
}

#[cfg(test)]
mod tests {
    use flowpilot_core::command::Command;
    use flowpilot_core::decide::Policy;
    use flowpilot_core::effect::{Effect, EffectError};
    use flowpilot_core::health::HealthEvent;
    use flowpilot_core::model::Workflow;

    use super::*;
    use crate::aws::queue::QueueError;
    use crate::store::memory::MemoryStore;
    use crate::worker::shell::Executed;

    /// A shell with nothing to do: the store is empty, so no effect is ever executed.
    struct Idle;

    impl Shell for Idle {
        async fn execute(&self, _wf: &Workflow, _effects: &[Effect]) -> Executed {
            Executed::default()
        }

        async fn send_command(&self, _cmd: &Command, _delay: Duration) -> Result<(), QueueError> {
            Ok(())
        }

        async fn publish(&self, events: &[HealthEvent]) -> Vec<Result<(), EffectError>> {
            events.iter().map(|_| Ok(())).collect()
        }
    }

    #[tokio::test]
    async fn ticks_until_shutdown_then_returns() {
        let metrics = Metrics::new();
        let handler = Arc::new(Handler::new(
            Arc::new(MemoryStore::new()),
            Arc::new(Idle),
            Policy::default(),
            Arc::clone(&metrics),
        ));
        let shutdown = CancellationToken::new();
        let ticker = tokio::spawn(run(
            handler,
            Arc::clone(&metrics),
            Duration::from_millis(10),
            shutdown.clone(),
            CancellationToken::new(),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.total(metrics::RECONCILE_PASSES) < 3 {
            assert!(Instant::now() < deadline, "fewer than 3 passes in 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), ticker)
            .await
            .expect("the ticker stops on shutdown")
            .expect("the ticker task does not panic");
        assert!(
            metrics
                .render()
                .contains("flowpilot_reconcile_passes_total{result=\"ok\"}")
        );
    }
}
