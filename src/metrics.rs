//! Process metrics in the Prometheus text exposition format (hand-rolled: a handful of
//! counters and one histogram do not justify a metrics framework).
//!
//! Every AWS request the SDK sends (each attempt, retries included) is counted by
//! [`RequestCounter`], an SDK interceptor, under `flowpilot_aws_requests_total{service,operation}`:
//! the benchmark divides those by batches to get "AWS requests per batch by service".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Counter names and their help text; `render` prints them in this order.
pub const COUNTERS: &[(&str, &str)] = &[
    (MESSAGES_RECEIVED, "SQS messages received by the pollers."),
    (
        MESSAGES_HANDLED,
        "Messages whose handling finished, by outcome (done, deferred, redelayed, unknown_workflow: deleted; failed: retried).",
    ),
    (
        MESSAGES_POISON,
        "Receives of messages that are not a flowpilot envelope.",
    ),
    (
        MESSAGES_IGNORED,
        "Well-formed messages flowpilot does not act on (deleted).",
    ),
    (
        DELETE_FAILURES,
        "Handled messages SQS did not delete, even on a retry (they are redelivered; handling is idempotent).",
    ),
    (TRANSITIONS, "State transitions committed to the store."),
    (
        CONFLICTS,
        "Conditional writes that lost to a concurrent writer (reload and re-decide).",
    ),
    (EFFECTS, "Outbox effects executed, by kind and result."),
    (
        RUN_SLOTS,
        "Run slots asked of the shared run budget, by result (granted, denied) and, when denied, the limit that refused (profile, account).",
    ),
    (
        RUN_SLOT_RELEASES,
        "Run slots given back to the shared run budget, by result.",
    ),
    (
        QUOTA_REFUSALS,
        "AppFlow ServiceQuotaExceededException answers, by operation (start_flow, create_flow) and the budget limit lowered for them (profile, account, flows, none).",
    ),
    (
        RETRIES_SCHEDULED,
        "Delayed retry_due commands sent for batch retries.",
    ),
    (
        DEFERRED,
        "Delayed commands sent to finish work later (re-delayed retries, drains of a stuck outbox).",
    ),
    (
        DRAINS_SCHEDULED,
        "Delayed drain commands sent for stuck outboxes (at most one pending per workflow).",
    ),
    (
        RECONCILE_PASSES,
        "In-process reconcile-all passes (FLOWPILOT_RECONCILE_EVERY), by result.",
    ),
    (
        STORE_UNREADABLE,
        "Stored workflows a reconcile-all pass could not read and skipped (counted again by every pass).",
    ),
    (
        AWS_REQUESTS,
        "HTTP requests sent to AWS (every attempt, SDK retries included), by service and operation.",
    ),
    (
        RECORDS_FAILED,
        "Records AppFlow runs read but could not write to Customer Profiles, counted when their Records Not Sent event is published, by flow role (batch, live).",
    ),
    (
        WORKFLOW_PAUSES,
        "Workflow Paused events published: starts paused because the SaaS API allowance was spent.",
    ),
    (
        BATCH_SPLITS,
        "Batch Split events published: batch windows split in two because a run failed for size or time.",
    ),
    (
        CRITICAL_PATHS,
        "Run End reports whose handling started the next batch (the denominator of the next metric).",
    ),
    (
        CRITICAL_PATH_REQUESTS,
        "AWS requests made from receiving a run's End report up to and including the next batch's StartFlow, summed.",
    ),
    (
        CRITICAL_PATH_MICROS,
        "Microseconds from the start of an End report's handling to the next batch's StartFlow answer, summed.",
    ),
];

pub const MESSAGES_RECEIVED: &str = "flowpilot_messages_received_total";
pub const MESSAGES_HANDLED: &str = "flowpilot_messages_handled_total";
pub const MESSAGES_POISON: &str = "flowpilot_messages_poison_total";
pub const MESSAGES_IGNORED: &str = "flowpilot_messages_ignored_total";
pub const DELETE_FAILURES: &str = "flowpilot_message_delete_failures_total";
pub const TRANSITIONS: &str = "flowpilot_transitions_total";
pub const CONFLICTS: &str = "flowpilot_conditional_write_conflicts_total";
pub const EFFECTS: &str = "flowpilot_effects_total";
pub const RUN_SLOTS: &str = "flowpilot_run_slots_total";
pub const RUN_SLOT_RELEASES: &str = "flowpilot_run_slot_releases_total";
pub const QUOTA_REFUSALS: &str = "flowpilot_quota_refusals_total";
pub const RETRIES_SCHEDULED: &str = "flowpilot_retries_scheduled_total";
pub const DEFERRED: &str = "flowpilot_deferred_commands_total";
pub const DRAINS_SCHEDULED: &str = "flowpilot_drains_scheduled_total";
pub const RECONCILE_PASSES: &str = "flowpilot_reconcile_passes_total";
pub const STORE_UNREADABLE: &str = "flowpilot_store_unreadable_items_total";
pub const AWS_REQUESTS: &str = "flowpilot_aws_requests_total";
pub const RECORDS_FAILED: &str = "flowpilot_records_failed_total";
pub const WORKFLOW_PAUSES: &str = "flowpilot_workflow_pauses_total";
pub const BATCH_SPLITS: &str = "flowpilot_batch_splits_total";
pub const CRITICAL_PATHS: &str = "flowpilot_critical_paths_total";
pub const CRITICAL_PATH_REQUESTS: &str = "flowpilot_critical_path_requests_total";
pub const CRITICAL_PATH_MICROS: &str = "flowpilot_critical_path_microseconds_total";
pub const HANDLING_SECONDS: &str = "flowpilot_message_handling_seconds";

/// Upper bounds (seconds) of the handling-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`].
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Shared by every task of the worker (behind an `Arc`).
#[derive(Default)]
pub struct Metrics {
    /// (metric name, rendered label set such as `{service="SQS"}`) → value.
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    latency: Mutex<Histogram>,
}

/// Poisoned locks only mean another thread panicked mid-increment; the counts are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn inc(&self, name: &'static str) {
        self.add(name, &[], 1);
    }

    pub fn inc_with(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], n: u64) {
        let rendered = render_labels(labels);
        *lock(&self.counters).entry((name, rendered)).or_insert(0) += n;
    }

    /// Sum of a counter over all its label sets.
    pub fn total(&self, name: &str) -> u64 {
        lock(&self.counters)
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, v)| *v)
            .sum()
    }

    pub fn observe_handling(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut h = lock(&self.latency);
        h.count += 1;
        h.sum += secs;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = lock(&self.counters).clone();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let mut any = false;
            for ((n, labels), v) in &counters {
                if n == name {
                    any = true;
                    let _ = writeln!(out, "{name}{labels} {v}");
                }
            }
            if !any {
                let _ = writeln!(out, "{name} 0");
            }
        }
        let h = lock(&self.latency);
        let name = HANDLING_SECONDS;
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving a message to finishing its handling.\n# TYPE {name} histogram"
        );
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", h.buckets[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}", h.sum);
        let _ = writeln!(out, "{name}_count {}", h.count);
        out
    }
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// SDK interceptor counting every transmitted request by service and operation.
#[derive(Clone)]
pub struct RequestCounter {
    metrics: Arc<Metrics>,
}

impl RequestCounter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl std::fmt::Debug for RequestCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestCounter")
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "flowpilot::RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_else(|| ("unknown".to_owned(), "unknown".to_owned()));
        self.metrics.inc_with(
            AWS_REQUESTS,
            &[("service", &service), ("operation", &operation)],
        );
        let _ = PATH.try_with(|p| {
            if !p.done.get() {
                p.requests.set(p.requests.get().saturating_add(1));
            }
        });
        Ok(())
    }
}

/// Counts what a published health event reports: records not sent (by flow role), pauses and
/// splits.
/// Counted at publication, so a publish repeated after a crash before its outcome was written
/// counts twice (as every counter here may after a crash).
pub fn count_published(metrics: &Metrics, event: &flowpilot_core::health::HealthEvent) {
    use flowpilot_core::health::HealthKind;
    let d = &event.detail;
    match event.kind {
        HealthKind::RecordsNotSent => {
            let role = if d.batch.is_some() { "batch" } else { "live" };
            metrics.add(
                RECORDS_FAILED,
                &[("role", role)],
                d.records_failed.unwrap_or(0),
            );
        }
        HealthKind::WorkflowPaused => metrics.inc(WORKFLOW_PAUSES),
        HealthKind::BatchSplit => metrics.inc(BATCH_SPLITS),
        _ => {}
    }
}

tokio::task_local! {
    /// The AWS requests of one handling on the critical path (see [`measure_critical_path`]).
    static PATH: CriticalPath;
}

struct CriticalPath {
    requests: std::cell::Cell<u64>,
    done: std::cell::Cell<bool>,
    started: std::time::Instant,
}

/// Runs `handling` (of a run's End report) counting the AWS requests it makes until
/// [`critical_path_reached`]: the requests between a run's end and the next run's start, the
/// latency the source waits for.
pub async fn measure_critical_path<F: std::future::Future>(handling: F) -> F::Output {
    let path = CriticalPath {
        requests: std::cell::Cell::new(0),
        done: std::cell::Cell::new(false),
        started: std::time::Instant::now(),
    };
    PATH.scope(path, handling).await
}

/// The next batch's StartFlow answered: record the requests so far (once per handling).
pub fn critical_path_reached(metrics: &Metrics) {
    let _ = PATH.try_with(|p| {
        if !p.done.replace(true) {
            metrics.inc(CRITICAL_PATHS);
            metrics.add(CRITICAL_PATH_REQUESTS, &[], p.requests.get());
            let micros = u64::try_from(p.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            metrics.add(CRITICAL_PATH_MICROS, &[], micros);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_and_histogram() {
        let m = Metrics::new();
        m.inc(TRANSITIONS);
        m.inc_with(
            AWS_REQUESTS,
            &[("service", "AppFlow"), ("operation", "StartFlow")],
        );
        m.inc_with(
            AWS_REQUESTS,
            &[("service", "AppFlow"), ("operation", "StartFlow")],
        );
        m.observe_handling(Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains("flowpilot_transitions_total 1"));
        assert!(text.contains(
            "flowpilot_aws_requests_total{service=\"AppFlow\",operation=\"StartFlow\"} 2"
        ));
        assert!(text.contains("flowpilot_message_handling_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("flowpilot_message_handling_seconds_count 1"));
        assert_eq!(m.total(AWS_REQUESTS), 2);
    }

    #[test]
    fn published_events_count_records_not_sent_and_pauses() {
        use flowpilot_core::health::{BatchRef, HealthDetail, HealthEvent, HealthKind, Progress};
        let t = chrono::DateTime::UNIX_EPOCH;
        let event = |kind, batch: bool, failed| HealthEvent {
            kind,
            detail: HealthDetail {
                event_id: "x".into(),
                workflow_id: "wf".into(),
                domain: "d".into(),
                object_type: "o".into(),
                connector: "salesforce".into(),
                status: "live".into(),
                flow_name: None,
                batch: batch.then_some(BatchRef {
                    index: 0,
                    start: t,
                    end: t,
                }),
                attempt: None,
                progress: Progress {
                    batches_done: 0,
                    batches_total: 0,
                    records: 0,
                },
                error: None,
                transient: None,
                retry_at: None,
                command: None,
                recommendation: None,
                action: None,
                connector_profile: None,
                records_failed: failed,
                records_processed: None,
                max_record_failures: None,
                halves: None,
                time: t,
            },
        };
        let m = Metrics::new();
        count_published(&m, &event(HealthKind::RecordsNotSent, true, Some(70)));
        count_published(&m, &event(HealthKind::RecordsNotSent, false, Some(4)));
        count_published(&m, &event(HealthKind::WorkflowPaused, true, None));
        count_published(&m, &event(HealthKind::BatchSucceeded, true, None));
        count_published(&m, &event(HealthKind::BatchSplit, true, None));
        let text = m.render();
        assert!(
            text.contains("flowpilot_records_failed_total{role=\"batch\"} 70"),
            "{text}"
        );
        assert!(
            text.contains("flowpilot_records_failed_total{role=\"live\"} 4"),
            "{text}"
        );
        assert_eq!(m.total(WORKFLOW_PAUSES), 1);
        assert_eq!(m.total(BATCH_SPLITS), 1);
    }
}
