//! Reliability under faults (issue 6 acceptance): lost and duplicated events, `kill -9`,
//! throttling and 5xx, contention between workers, poison messages, and a continuous
//! integration that degrades and is rebuilt without a gap; plus on-demand rebuilds (CLI and
//! command event) and a stalled run that the reconciler cancels and retries.
//!
//! Each test has its own moto server with the flowpilot stack, its own in-process simulator
//! and real `flowpilot worker` processes with the in-process reconciler ticking every second.
//! Every wait is a poll with a deadline. Each test prints one machine-readable line,
//! `RELIABILITY|scenario|ok|missing=N|dup=N|secs=S`, that `scripts/reliability-report` turns
//! into a table.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::support::chaos::{self, WorkerPool, secs};
use crate::support::e2e::{
    self, Env, LedgerCheck, OBJECT_TYPE, POLL, SimSetup, WorkflowArgs, batch_flow, count,
    health_counts, live_flow, live_flow_of, poll_every, runs_of,
};
use crate::support::fuzz;
use anyhow::{Context as _, anyhow, ensure};
use chrono::{DateTime, Utc};
use flowpilot::core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot::store::Store as _;
use flowpilot_sim::{DurationRange, FaultPlan};
use serde_json::{Value, json};

/// What a scenario reports for the results table.
struct Outcome {
    missing: u64,
    dup: u64,
    /// From the operator's request to the outcome the scenario waits for.
    secs: f64,
}

impl Outcome {
    fn from_ledger(l: LedgerCheck, secs: f64) -> Self {
        Self {
            missing: l.missing(),
            dup: l.duplicates,
            secs,
        }
    }

    /// A scenario's last step: stops the stack, then reports `l`.
    async fn after_shutdown(env: Env, l: LedgerCheck, secs: f64) -> anyhow::Result<Self> {
        env.shutdown().await;
        Ok(Self::from_ledger(l, secs))
    }
}

/// Runs a scenario and prints its `RELIABILITY|…` line, pass or fail.
async fn scenario(
    name: &str,
    body: impl Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    match body.await {
        Ok(o) => {
            println!(
                "RELIABILITY|{name}|ok|missing={}|dup={}|secs={:.1}",
                o.missing, o.dup, o.secs
            );
            Ok(())
        }
        Err(e) => {
            println!(
                "RELIABILITY|{name}|FAIL|missing=?|dup=?|secs={:.1}",
                secs(started)
            );
            Err(e)
        }
    }
}

/// The simulator of a scenario: `faults` from the start (after the set-up calls), `seed`.
fn sim_setup(faults: FaultPlan, seed: u64) -> SimSetup {
    SimSetup {
        faults,
        seed,
        ..SimSetup::default()
    }
}

/// Every run takes between `min_ms` and `max_ms`; nothing else goes wrong.
fn runs_lasting(min_ms: u64, max_ms: u64) -> FaultPlan {
    FaultPlan {
        run_duration_ms: DurationRange {
            min: min_ms,
            max: max_ms,
        },
        ..FaultPlan::default()
    }
}

fn is_live(wf: &Workflow) -> bool {
    wf.status == WorkflowStatus::Live && wf.outbox.is_empty()
}

fn time(v: &Value) -> anyhow::Result<DateTime<Utc>> {
    serde_json::from_value(v.clone()).with_context(|| format!("not a time: {v}"))
}

/// Every batch succeeded, and the simulator ran no batch more often than the workflow
/// started it (`attempt`). With `exactly_once`, every batch ran exactly once.
fn ensure_runs_match_attempts(
    runs: &Value,
    wf: &Workflow,
    exactly_once: bool,
) -> anyhow::Result<()> {
    for b in &wf.batches {
        ensure!(
            b.status == BatchStatus::Succeeded,
            "{}: batch {} is {:?}",
            wf.id,
            b.index,
            b.status
        );
        let n = runs_of(runs, &batch_flow(&wf.id, b.index)).len();
        ensure!(
            n <= b.attempt as usize,
            "{}: batch {} ran {n} times in {} attempts",
            wf.id,
            b.index,
            b.attempt
        );
        if exactly_once {
            ensure!(
                n == 1 && b.attempt == 1,
                "{}: batch {} ran {n} times, attempt {}",
                wf.id,
                b.index,
                b.attempt
            );
        }
    }
    Ok(())
}

/// [`ensure_runs_match_attempts`], then the workflow's ledger holds every source record of its
/// range exactly once (`what` names it in the error).
async fn ensure_ran_and_complete(
    env: &Env,
    runs: &Value,
    wf: &Workflow,
    exactly_once: bool,
    what: &str,
) -> anyhow::Result<LedgerCheck> {
    ensure_runs_match_attempts(runs, wf, exactly_once)?;
    let ledger = env.workflow_ledger(wf).await?;
    ledger.ensure_complete(what)?;
    Ok(ledger)
}

/// The simulator never saw two runs of one batch flow at the same time.
fn ensure_no_concurrent_runs(runs: &Value, wf: &Workflow) -> anyhow::Result<()> {
    let max = &runs["max_concurrent_per_flow"];
    for b in &wf.batches {
        let name = batch_flow(&wf.id, b.index);
        let n = max[&name].as_u64().unwrap_or(0);
        ensure!(n <= 1, "{name} had {n} concurrent runs");
    }
    Ok(())
}

/// Sum of a counter's lines whose labels contain every one of `labels`.
fn counter_where(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

const DAY: &str = "T00:00:00Z";

fn date(d: &str) -> String {
    format!("{d}{DAY}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_percent_of_end_events_lost_the_reconciler_completes_the_workflow()
-> anyhow::Result<()> {
    scenario("30% end events dropped", async {
        let env = Env::start(
            "drops",
            sim_setup(chaos::dropped_end_events(0.3), chaos::seed(1)),
        )
        .await?;
        let worker = env.spawn_worker("a", &[])?;
        // 16 two-week batches: with 30% loss, several reports are lost for sure.
        let args = WorkflowArgs::new("drops", &date("2025-01-01"), &date("2025-08-06"), "P14D");
        let started = Instant::now();
        let id = env.create_workflow(&args).await?;
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(150), is_live)
            .await?;
        let secs = secs(started);
        ensure!(wf.batches.len() == 16, "{} batches", wf.batches.len());

        let dropped = end_reports(&env)
            .await?
            .iter()
            .filter(|e| e["dropped"] == true)
            .count();
        ensure!(
            dropped >= 1,
            "no end report was dropped: the scenario proved nothing"
        );
        // The reconciler found those runs' results with DescribeFlowExecutionRecords.
        let metrics = worker.metrics(&env.http).await?;
        let described = counter_where(
            &metrics,
            "flowpilot_effects_total",
            &["kind=\"describe_run\"", "result=\"ok\""],
        );
        ensure!(described >= 1, "no run was described:\n{metrics}");
        ensure!(
            e2e::counter(&metrics, "flowpilot_reconcile_passes_total") >= 1,
            "the reconcile ticker never ran"
        );
        let runs = env.runs().await?;
        // A lost report is not a failure: every batch still ran once.
        let ledger = ensure_ran_and_complete(&env, &runs, &wf, true, "backfill").await?;
        worker.assert_no_panic()?;
        eprintln!("{dropped} end reports dropped, {described} runs described by the reconciler");
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_item_is_reported_and_the_reconciler_still_completes_every_other_workflow()
-> anyhow::Result<()> {
    scenario("unreadable item skipped", async {
        // Every End report is lost: only the reconcile pass (which lists the active
        // workflows, the unreadable item among them) moves the workflows on.
        let env = Env::start(
            "unreadable",
            sim_setup(chaos::dropped_end_events(1.0), chaos::seed(11)),
        )
        .await?;
        let key = env.put_unreadable_item("unreadable-item").await?;
        let worker = env.spawn_worker("a", &[])?;
        let started = Instant::now();
        let args = [
            WorkflowArgs::new(
                "readable-a",
                &date("2025-01-01"),
                &date("2025-01-29"),
                "P14D",
            ),
            WorkflowArgs::new(
                "readable-b",
                &date("2025-03-01"),
                &date("2025-03-29"),
                "P14D",
            ),
        ];
        let ids = env.create_workflows(&args, 2).await?;
        let mut ledger = LedgerCheck::default();
        let wfs = async {
            let mut wfs = Vec::new();
            for id in &ids {
                wfs.push(
                    env.wait_for(id, "live", Duration::from_secs(120), is_live)
                        .await?,
                );
            }
            anyhow::Ok(wfs)
        }
        .await
        .with_context(|| format!("worker log:\n{}", e2e::tail(&worker.log_text(), 30)))?;
        let secs = secs(started);
        let all_runs = env.runs().await?;
        for wf in &wfs {
            let l = ensure_ran_and_complete(&env, &all_runs, wf, true, wf.id.as_str()).await?;
            ledger.source += l.source;
            ledger.distinct += l.distinct;
            ledger.duplicates += l.duplicates;
        }
        ensure!(
            end_reports(&env)
                .await?
                .iter()
                .all(|e| e["dropped"] == true),
            "an End report got through: the reconciler was not the only way forward"
        );

        // Reported: a log line with the key and the reason, the metric, the health event.
        let log = worker.log_text();
        ensure!(
            log.lines()
                .any(|l| l.contains("unreadable") && l.contains(&key) && l.contains("exploded")),
            "no log line names {key} and why it is unreadable:\n{}",
            e2e::tail(&log, 30)
        );
        let metrics = worker.metrics(&env.http).await?;
        ensure!(
            e2e::counter(&metrics, "flowpilot_store_unreadable_items_total") >= 1,
            "the unreadable item was not counted:\n{metrics}"
        );
        let mut seen = Vec::new();
        let unreadable = |events: &[Value]| {
            events.iter().any(|e| {
                e["detail-type"] == "Workflow Unreadable"
                    && e["detail"]["workflow_id"] == "unreadable-item"
            })
        };
        env.health_until(&mut seen, Duration::from_secs(30), unreadable)
            .await?;
        let event = seen
            .iter()
            .find(|e| e["detail-type"] == "Workflow Unreadable")
            .context("no Workflow Unreadable")?;
        ensure!(
            event["detail"]["event_id"] == "unreadable-item/workflow-unreadable/v7"
                && event["detail"]["domain"] == e2e::DOMAIN
                && event["detail"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("exploded")),
            "unexpected Workflow Unreadable: {event}"
        );
        worker.assert_no_panic()?;
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

/// The AppFlow End Flow Run Reports the simulator emitted (with its `dropped` / `duplicated`
/// marks).
async fn end_reports(env: &Env) -> anyhow::Result<Vec<Value>> {
    let events = env.sim_get("/_sim/events").await?;
    Ok(events
        .as_array()
        .or_else(|| events["events"].as_array())
        .into_iter()
        .flatten()
        .filter(|e| e["detail-type"] == "AppFlow End Flow Run Report")
        .cloned()
        .collect())
}

/// The AppFlow event envelope EventBridge would deliver for a recorded run report.
fn appflow_envelope(event: &Value, n: usize) -> Value {
    json!({
        "version": "0",
        "id": format!("redelivered-{n}"),
        "detail-type": event["detail-type"],
        "source": "aws.appflow",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": event["detail"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_end_event_duplicated_and_redelivered_runs_each_batch_once() -> anyhow::Result<()> {
    scenario("every event duplicated + redelivered", async {
        let env = Env::start(
            "dupes",
            // Copies arrive 250 ms later: usually while the next batch is starting or running.
            sim_setup(chaos::duplicated_events(250), chaos::seed(2)),
        )
        .await?;
        let mut pool = WorkerPool::start(&env, 2, &[])?;
        let args = WorkflowArgs::new("dupes", &date("2025-01-01"), &date("2025-04-23"), "P14D");
        let started = Instant::now();
        let id = env.create_workflow(&args).await?;
        let before = env
            .wait_for(&id, "live", Duration::from_secs(120), is_live)
            .await?;
        let secs = secs(started);

        // SQS redelivers too: every end report the simulator emitted arrives once more, late.
        let ends = end_reports(&env).await?;
        ensure!(
            ends.len() >= before.batches.len(),
            "only {} end reports",
            ends.len()
        );
        ensure!(
            ends.iter().all(|e| e["duplicated"] == true),
            "some end report was not duplicated"
        );
        let bodies: Vec<String> = ends
            .iter()
            .enumerate()
            .map(|(n, e)| appflow_envelope(e, n).to_string())
            .collect();
        env.send_raw(&bodies).await?;
        // Handled means deleted: wait until the work queue is empty again.
        poll_every(POLL, Duration::from_secs(60), || async {
            Ok((env.queue_counts(&env.stack.queue_url).await? == (0, 0, 0)).then_some(()))
        })
        .await
        .context("work queue never drained after the redelivery")?;

        let after = env.load(&id).await?;
        ensure!(
            after.version == before.version && after.status == WorkflowStatus::Live,
            "redelivered reports changed the workflow: v{} → v{} ({:?})",
            before.version,
            after.version,
            after.status
        );
        let runs = env.runs().await?;
        let ledger = ensure_ran_and_complete(&env, &runs, &after, true, "backfill").await?;
        pool.ensure_healthy()?;
        eprintln!(
            "{} end reports duplicated and {} redelivered",
            ends.len(),
            bodies.len()
        );
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_kill_nines_of_two_workers_lose_nothing_and_never_double_run() -> anyhow::Result<()>
{
    scenario("20x kill -9, 2 workers, 24 batches", async {
        let seed = chaos::seed(3);
        let env = Env::start("kill9", sim_setup(runs_lasting(200, 400), seed)).await?;
        let mut pool = WorkerPool::start(&env, 2, &[])?;
        let mut args = WorkflowArgs::new("kill9", &date("2024-01-01"), &date("2026-01-01"), "P1M");
        args.concurrency = 2;
        let started = Instant::now();
        let id = env.create_workflow(&args).await?;
        env.wait_for(&id, "backfilling", Duration::from_secs(30), |w| {
            w.status != WorkflowStatus::Pending
        })
        .await?;
        let mut rng = fastrand::Rng::with_seed(seed);
        let report = pool
            .chaos(
                &env,
                &mut rng,
                20,
                Duration::from_millis(150)..Duration::from_millis(900),
            )
            .await?;
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(240), is_live)
            .await?;
        let secs = secs(started);
        ensure!(wf.batches.len() == 24, "{} batches", wf.batches.len());
        let completed = wf.completed_at.ok_or_else(|| anyhow!("no completed_at"))?;
        let during = report.at.iter().filter(|t| **t < completed).count();
        ensure!(
            during == report.kills && report.kills == 20,
            "only {during} of {} kills hit the running workflow (seed {seed})",
            report.kills
        );

        let runs = env.runs().await?;
        ensure_no_concurrent_runs(&runs, &wf)?;
        let ledger = ensure_ran_and_complete(&env, &runs, &wf, false, "backfill").await?;
        pool.ensure_healthy()?;
        eprintln!(
            "seed {seed}: killed slots {:?}; attempts {:?}",
            report.victims,
            wf.batches.iter().map(|b| b.attempt).collect::<Vec<_>>()
        );
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_percent_throttling_and_five_percent_5xx_still_complete() -> anyhow::Result<()> {
    scenario("20% throttling + 5% 5xx", async {
        let env = Env::start(
            "flaky",
            sim_setup(chaos::flaky_apis(0.20, 0.05), chaos::seed(4)),
        )
        .await?;
        let worker = env.spawn_worker("a", &[])?;
        let mut args = WorkflowArgs::new("flaky", &date("2025-01-01"), &date("2025-04-23"), "P14D");
        args.concurrency = 2;
        let started = Instant::now();
        let id = env.create_workflow(&args).await?;
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(150), is_live)
            .await?;
        let secs = secs(started);

        // The faults were real: more requests reached the simulator than effects were run.
        let metrics = worker.metrics(&env.http).await?;
        // The SDK names the service `Appflow`; compare case-insensitively.
        let lower = metrics.to_lowercase();
        let requests = counter_where(&lower, "flowpilot_aws_requests_total", &["service=\"appflow\""])
            + counter_where(
                &lower,
                "flowpilot_aws_requests_total",
                &["service=\"customer profiles\""],
            );
        let effects: u64 = [
            "create_flow",
            "start_flow",
            "cancel_run",
            "delete_flow",
            "describe_run",
            "put_integration",
            "delete_integration",
        ]
        .iter()
        .map(|k| counter_where(&metrics, "flowpilot_effects_total", &[&format!("kind=\"{k}\"")]))
        .sum();
        ensure!(
            requests > effects,
            "{requests} AppFlow/Customer Profiles requests for {effects} effects: nothing was retried\n{metrics}"
        );
        let runs = env.runs().await?;
        let ledger = ensure_ran_and_complete(&env, &runs, &wf, false, "backfill").await?;
        worker.assert_no_panic()?;
        eprintln!("{requests} requests to the simulator for {effects} effects");
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_fifty_workflows_contend_without_losing_an_update() -> anyhow::Result<()> {
    scenario("3 workers, 50 workflows", async {
        const N: usize = 50;
        let object_types: Vec<String> = (0..N).map(|i| format!("Acct{i:02}")).collect();
        let env = Env::start(
            "fifty",
            SimSetup {
                object_types: object_types.clone(),
                ..sim_setup(chaos::short_runs(), chaos::seed(5))
            },
        )
        .await?;
        let mut pool = WorkerPool::start(&env, 3, &[("FLOWPILOT_RECONCILE_EVERY", "2s")])?;
        // One object type each, so every workflow's ledger can be checked on its own.
        let all: Vec<WorkflowArgs> = object_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut a = WorkflowArgs::new(
                    &format!("wf{i:02}"),
                    &date("2025-01-01"),
                    &date("2025-01-29"),
                    "P14D",
                );
                a.object_type = t.clone();
                a
            })
            .collect();
        let started = Instant::now();
        let ids = env.create_workflows(&all, 10).await?;
        let done = poll_every(
            Duration::from_millis(500),
            Duration::from_secs(300),
            || async {
                let wfs = env.store.list_all().await?.workflows;
                let live = wfs.iter().filter(|w| is_live(w)).count();
                Ok((live == N).then_some(wfs))
            },
        )
        .await;
        let wfs = match done {
            Ok(w) => w,
            Err(e) => {
                let wfs = env.store.list_all().await?.workflows;
                let stuck: Vec<String> = wfs
                    .iter()
                    .filter(|w| !is_live(w))
                    .map(|w| flowpilot::cli::workflow::status_text(w, Utc::now()))
                    .collect();
                return Err(e.context(format!("not live:\n{}", stuck.join("\n"))));
            }
        };
        let secs = secs(started);
        ensure!(wfs.len() == N && ids.len() == N, "{} workflows", wfs.len());

        let conflicts = pool
            .counter_total(&env, "flowpilot_conditional_write_conflicts_total")
            .await?;
        ensure!(
            conflicts > 0,
            "no conditional-write conflict: the contention was not real"
        );
        let runs = env.runs().await?;
        let mut total = LedgerCheck::default();
        for wf in &wfs {
            let l = ensure_ran_and_complete(&env, &runs, wf, true, wf.id.as_str()).await?;
            total.source += l.source;
            total.distinct += l.distinct;
            total.duplicates += l.duplicates;
        }
        pool.ensure_healthy()?;
        eprintln!("{conflicts} conditional-write conflicts among 3 workers");
        Outcome::after_shutdown(env, total, secs).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_fuzzed_messages_end_in_the_dlq_and_the_worker_keeps_working()
-> anyhow::Result<()> {
    scenario("1,000 fuzzed messages", async {
        const TOTAL: usize = 1000;
        /// Bodies sent per wave, and how many may be on their way to the DLQ at once: moto
        /// scans the whole queue on every call, so the queue is kept shallow.
        const WAVE: usize = 50;
        const BACKLOG: u64 = 100;
        let seed = chaos::seed(6);
        let env = Env::start("fuzz", sim_setup(chaos::short_runs(), seed)).await?;
        // One poller: moto 5.x races when two ReceiveMessage calls move the same message to the
        // DLQ at once (`list.remove(x): x not in list`, HTTP 500), and a receive that fails that
        // way leaves its messages invisible for the whole visibility timeout. Real SQS has no
        // such race; several pollers are covered by the other scenarios.
        let mut worker = env.spawn_worker("a", &[("FLOWPILOT_POLLERS", "1")])?;
        let mut rng = fastrand::Rng::with_seed(seed);
        let bodies = fuzz::bodies(&mut rng, TOTAL);
        let mut kinds = std::collections::BTreeMap::new();
        for (k, b) in &bodies {
            let e = kinds.entry(format!("{k:?}")).or_insert((0usize, 0usize));
            e.0 += 1;
            e.1 = e.1.max(b.len());
        }
        eprintln!("fuzz seed {seed}: (count, largest body) by kind: {kinds:?}");

        let started = Instant::now();
        let mut id = None;
        let mut sent = 0u64;
        for wave in bodies.chunks(WAVE) {
            let floor = sent.saturating_sub(BACKLOG);
            poll_every(
                Duration::from_millis(500),
                Duration::from_secs(120),
                || async { Ok((env.dlq_depth().await? >= floor).then_some(())) },
            )
            .await
            .with_context(|| {
                format!(
                    "DLQ stuck below {floor}:\n{}",
                    e2e::tail(&worker.log_text(), 20)
                )
            })?;
            let texts: Vec<String> = wave.iter().map(|(_, b)| b.clone()).collect();
            env.send_raw(&texts).await?;
            sent += texts.len() as u64;
            if id.is_none() {
                // A good workflow, handled in between the poison.
                let args = WorkflowArgs::new(
                    "amid-fuzz",
                    &date("2025-01-01"),
                    &date("2025-02-26"),
                    "P14D",
                );
                id = Some(env.create_workflow(&args).await?);
            }
        }
        let id = id.ok_or_else(|| anyhow!("no workflow created"))?;
        let all_in = poll_every(
            Duration::from_millis(500),
            Duration::from_secs(240),
            || async { Ok((env.dlq_depth().await? >= TOTAL as u64).then_some(())) },
        )
        .await;
        if let Err(e) = all_in {
            let depth = env.dlq_depth().await?;
            return Err(e.context(format!("DLQ holds {depth} of {TOTAL}")));
        }
        let secs = secs(started);
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(120), is_live)
            .await?;

        ensure!(
            worker.alive(),
            "the worker died:\n{}",
            e2e::tail(&worker.log_text(), 40)
        );
        worker.assert_no_panic()?;
        let dlq = env.dlq_depth().await?;
        ensure!(
            dlq == TOTAL as u64,
            "DLQ holds {dlq}, expected exactly {TOTAL}"
        );
        // Logged once each (on first receive), however often SQS delivered them.
        let log = worker.log_text();
        let logged = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("poison message"))
            .count();
        ensure!(
            logged == TOTAL,
            "{logged} poison log lines for {TOTAL} messages"
        );
        let metrics = worker.metrics(&env.http).await?;
        let receives = e2e::counter(&metrics, "flowpilot_messages_poison_total");
        ensure!(receives >= TOTAL as u64, "{receives} poison receives");
        let health = env
            .http
            .get(format!("{}/healthz", worker.metrics_url().await?))
            .send()
            .await?;
        ensure!(health.status().is_success(), "healthz {}", health.status());
        let ledger = env.workflow_ledger(&wf).await?;
        ledger.ensure_complete("workflow amid the fuzz")?;
        eprintln!("{receives} poison receives of {TOTAL} messages, all in the DLQ");
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

/// Where the first successful run of live flow `flow` whose pull started at `from` stopped
/// pulling, if there is such a run.
fn live_pull_end(
    runs: &Value,
    flow: &str,
    from: DateTime<Utc>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    runs_of(runs, flow)
        .into_iter()
        .filter(|r| time(&r["incremental_from"]).is_ok_and(|t| t == from))
        .find(|r| r["status"] == "Successful")
        .map(|r| time(&r["incremental_to"]))
        .transpose()
}

/// [`live_pull_end`], polled for up to 30 s.
async fn wait_live_pull_end(
    env: &Env,
    flow: &str,
    from: DateTime<Utc>,
) -> anyhow::Result<DateTime<Utc>> {
    poll_every(POLL, Duration::from_secs(30), || async {
        live_pull_end(&env.runs().await?, flow, from)
    })
    .await
}

/// The end of the last successful pull of live flow `flow` (its runs' windows are contiguous:
/// the cursor advances on success only).
fn last_live_pull_end(runs: &Value, flow: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    let mut last = None;
    for r in runs_of(runs, flow) {
        if r["status"] == "Successful" {
            let end = time(&r["incremental_to"])?;
            last = Some(last.map_or(end, |l: DateTime<Utc>| l.max(end)));
        }
    }
    Ok(last)
}

fn live_args(id: &str) -> WorkflowArgs {
    let mut args = WorkflowArgs::new(id, &date("2025-10-01"), &date("2025-10-29"), "P14D");
    // One sim day per tick: each live run pulls ~50 records.
    args.extra = vec!["--schedule".into(), "rate(1days)".into()];
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_failed_live_runs_degrade_and_auto_rebuild_resumes_without_a_gap()
-> anyhow::Result<()> {
    scenario("live degraded -> auto rebuild", async {
        let mut faults = chaos::short_runs();
        // The first live run succeeds (a good pull end to resume from), the next three fail.
        faults.run_failures = vec![chaos::failing_runs(
            "-live",
            vec![2, 3, 4],
            "INVALID_SESSION_ID: Session expired or invalid",
        )];
        let env = Env::start(
            "rebuild",
            SimSetup {
                tick_ms: 700,
                ..sim_setup(faults, chaos::seed(7))
            },
        )
        .await?;
        let worker = env.spawn_worker("a", &[])?;
        let mut args = live_args("rebuild");
        args.extra.extend([
            "--auto-rebuild".into(),
            "--degraded-threshold".into(),
            "3".into(),
        ]);
        let started = Instant::now();
        let id = env.create_workflow(&args).await?;
        let mut events = Vec::new();
        env.health_until(&mut events, Duration::from_secs(120), |all| {
            let c = health_counts(all);
            count(&c, "Integration Degraded") >= 1 && count(&c, "Integration Rebuilt") >= 1
        })
        .await?;
        // The rebuilt flow's first run is attempt 1 again: let it and later ones succeed.
        env.set_faults(&chaos::short_runs()).await?;
        let degraded = events
            .iter()
            .find(|e| e["detail-type"] == "Integration Degraded")
            .ok_or_else(|| anyhow!("no Integration Degraded"))?;
        ensure!(
            degraded["detail"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("INVALID_SESSION_ID")),
            "Integration Degraded without AppFlow's message: {degraded}"
        );

        let wf = env
            .wait_for(&id, "rebuilt and live", Duration::from_secs(60), |w| {
                is_live(w) && w.live.as_ref().is_some_and(|l| l.generation == 2)
            })
            .await?;
        let live = wf
            .live
            .clone()
            .ok_or_else(|| anyhow!("no live integration"))?;
        let backfill_to = wf.spec.to;
        // Generation 1 pulled [to, T1) once, then failed (and, if a run of it was under way
        // when the rebuild stopped its schedule, that run's window too): the rebuild resumes
        // at the end of generation 1's last successful pull.
        let runs = env.runs().await?;
        live_pull_end(&runs, &live_flow(&id), backfill_to)?
            .ok_or_else(|| anyhow!("no successful first live run from {backfill_to}"))?;
        let t1 = last_live_pull_end(&runs, &live_flow(&id))?
            .ok_or_else(|| anyhow!("no successful live run of generation 1"))?;
        ensure!(
            live.first_execution_from == t1 && t1 > backfill_to,
            "rebuilt from {} instead of the last good pull end {t1}",
            live.first_execution_from
        );
        // The rebuilt integration's first run.
        let t2 = wait_live_pull_end(&env, &live_flow_of(&id, 2), t1)
            .await
            .context("the rebuilt integration never ran")?;
        let secs = secs(started);

        let gap = env.ledger_check(OBJECT_TYPE, backfill_to, t2).await?;
        gap.ensure_complete("from the backfill's end to the rebuilt integration's first run")?;
        let backfill = env
            .ledger_check(OBJECT_TYPE, wf.spec.from, backfill_to)
            .await?;
        backfill.ensure_complete("backfill")?;
        worker.assert_no_panic()?;
        eprintln!(
            "backfill to {backfill_to}, generation 1 good until {t1}, rebuilt run to {t2}: {gap:?}"
        );
        Outcome::after_shutdown(env, gap, secs).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_on_demand_by_cli_and_command_event_resumes_without_a_gap() -> anyhow::Result<()> {
    scenario("rebuild by CLI + command event", async {
        let env = Env::start(
            "ondemand",
            SimSetup {
                tick_ms: 500,
                ..sim_setup(chaos::short_runs(), chaos::seed(8))
            },
        )
        .await?;
        let worker = env.spawn_worker("a", &[])?;
        let started = Instant::now();
        let id = env.create_workflow(&live_args("ondemand")).await?;
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(90), is_live)
            .await?;
        let backfill_to = wf.spec.to;
        poll_every(POLL, Duration::from_secs(30), || async {
            let runs = env.runs().await?;
            let ok = runs_of(&runs, &live_flow(&id))
                .iter()
                .filter(|r| r["status"] == "Successful")
                .count();
            Ok((ok >= 2).then_some(()))
        })
        .await
        .context("the live flow never ran twice")?;

        // An operator: `flowpilot integration rebuild ID`.
        let out = env.cli(&["integration", "rebuild", id.as_str()]).await?;
        ensure!(out.contains("rebuild"), "{out}");
        env.wait_for(&id, "generation 2", Duration::from_secs(60), |w| {
            is_live(w) && w.live.as_ref().is_some_and(|l| l.generation == 2)
        })
        .await?;

        // An alert automation: a `rebuild` command event on the default bus.
        let events = aws_sdk_eventbridge::Client::new(&env.sdk);
        let detail =
            json!({"command": "rebuild", "workflow_id": id.as_str(), "reason": "alert automation"});
        let put = events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("flowpilot.command")
                    .detail_type("Workflow Command")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await?;
        ensure!(put.failed_entry_count() == 0, "PutEvents failed: {put:?}");
        let wf = env
            .wait_for(&id, "generation 3", Duration::from_secs(60), |w| {
                is_live(w) && w.live.as_ref().is_some_and(|l| l.generation == 3)
            })
            .await?;
        let from3 = wf
            .live
            .as_ref()
            .map(|l| l.first_execution_from)
            .ok_or_else(|| anyhow!("no live integration"))?;
        ensure!(
            from3 > backfill_to,
            "generation 3 restarted at the backfill's end"
        );
        let t3 = wait_live_pull_end(&env, &live_flow_of(&id, 3), from3)
            .await
            .context("generation 3 never ran")?;
        let secs = secs(started);

        let mut seen = Vec::new();
        env.health_until(&mut seen, Duration::from_secs(30), |all| {
            count(&health_counts(all), "Integration Rebuilt") >= 2
        })
        .await?;
        // Old integrations and flows were deleted: one integration, one active live flow.
        let cp =
            aws_sdk_customerprofiles::Client::new(&env.sdk_as(crate::support::ADMIN_PROFILE).await);
        let listed = cp
            .list_integrations()
            .domain_name(e2e::DOMAIN)
            .send()
            .await?;
        let uris: Vec<&str> = listed.items().iter().map(|i| i.uri()).collect();
        let uri = wf.live.as_ref().and_then(|l| l.uri.as_deref());
        ensure!(
            uris.len() == 1 && Some(uris[0]) == uri,
            "integrations {uris:?}, workflow links {uri:?}"
        );
        let flows = env.flows().await?;
        let flows: Vec<(String, String)> = flows["flows"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| (f["name"].to_string(), f["status"].to_string()))
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            flows
                == [(
                    format!("\"{}\"", live_flow_of(&id, 3)),
                    "\"Active\"".to_owned()
                )],
            "flows left: {flows:?}"
        );
        // No gap. Overlap (re-written records) is tolerated here: should a run's End report be
        // later than FLOWPILOT_DESCRIBE_AFTER (2 s), a rebuild resumes from AppFlow's record of
        // the last record that run transferred, which it may write again; loss is never allowed.
        let span = env.ledger_check(OBJECT_TYPE, backfill_to, t3).await?;
        ensure!(
            span.source > 0 && span.missing() == 0,
            "gap after rebuilds: {span:?}"
        );
        worker.assert_no_panic()?;
        eprintln!("two on-demand rebuilds; [{backfill_to}, {t3}): {span:?}");
        Outcome::after_shutdown(env, span, secs).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_past_the_maximum_duration_is_cancelled_and_retried_with_workflow_stalled()
-> anyhow::Result<()> {
    scenario("stalled run cancelled + retried", async {
        let env = Env::start(
            "stall",
            // The first run would take 20 s; the reconciler gives up on it after 3 s.
            sim_setup(runs_lasting(20_000, 20_000), chaos::seed(9)),
        )
        .await?;
        let worker = env.spawn_worker(
            "a",
            &[
                ("FLOWPILOT_MAX_RUN", "3s"),
                ("FLOWPILOT_DESCRIBE_AFTER", "1s"),
            ],
        )?;
        let args = WorkflowArgs::new("stall", &date("2025-01-01"), &date("2025-01-15"), "P14D");
        let started = Instant::now();
        let id = env.create_workflow(&args).await?;
        env.wait_for(&id, "batch 0 running", Duration::from_secs(30), |w| {
            w.batches[0].status == BatchStatus::Running && w.batches[0].execution_id.is_some()
        })
        .await?;
        // The stuck run's duration was drawn when it started; the retry runs normally.
        env.set_faults(&chaos::short_runs()).await?;
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(60), is_live)
            .await?;
        let secs = secs(started);

        let mut events = Vec::new();
        env.health_until(&mut events, Duration::from_secs(30), |all| {
            count(&health_counts(all), "Workflow Stalled") >= 1
        })
        .await?;
        ensure!(
            wf.batches[0].attempt == 2,
            "attempts: {}",
            wf.batches[0].attempt
        );
        let runs = env.runs().await?;
        let b0 = runs_of(&runs, &batch_flow(&id, 0));
        let statuses: Vec<&str> = b0.iter().filter_map(|r| r["status"].as_str()).collect();
        ensure!(
            statuses == ["Canceled", "Successful"],
            "runs of batch 0: {statuses:?}"
        );
        ensure_no_concurrent_runs(&runs, &wf)?;
        // The cancelled run wrote part of its window before it stopped; the retry writes the
        // whole window again. Nothing may be missing; re-written records are expected.
        let ledger = env.workflow_ledger(&wf).await?;
        ensure!(
            ledger.source > 0 && ledger.missing() == 0,
            "records missing after the retry: {ledger:?}"
        );
        worker.assert_no_panic()?;
        eprintln!("stalled run cancelled and retried: {ledger:?}");
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

/// The outage: a compressed 10 minutes (production drains start at 10 s and back off to 5 min;
/// here 300 ms to 4 s), long enough for the backoff to reach its cap several times.
const OUTAGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_appflow_outage_keeps_one_drain_per_workflow_and_reports_each_stall_once()
-> anyhow::Result<()> {
    scenario("20 workflows through a 100% AppFlow 5xx outage", async {
        let env = Env::start("outage", sim_setup(runs_lasting(200, 300), chaos::seed(21))).await?;
        // Every AppFlow and Customer Profiles call answers 500 from the start.
        env.set_faults(&FaultPlan {
            server_error_rate: 1.0,
            ..runs_lasting(200, 300)
        })
        .await?;
        let worker = env.spawn_worker(
            "a",
            &[
                ("FLOWPILOT_DRAIN_BASE", "300ms"),
                ("FLOWPILOT_DRAIN_CAP", "4s"),
                ("FLOWPILOT_STALL_AFTER", "5s"),
            ],
        )?;
        let started = Instant::now();
        let first = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).context("date")?;
        let args: Vec<WorkflowArgs> = (0..20)
            .map(|i| {
                let from = first + chrono::Days::new(14 * i);
                let to = from + chrono::Days::new(14);
                WorkflowArgs::new(
                    &format!("outage-{i:02}"),
                    &date(&from.to_string()),
                    &date(&to.to_string()),
                    "P14D",
                )
            })
            .collect();
        let ids = env.create_workflows(&args, 4).await?;

        // Through the outage, every workflow is reported stalled (once).
        let mut seen = Vec::new();
        env.health_until(&mut seen, OUTAGE * 3, |events| {
            stalled_workflows(events).len() >= ids.len()
        })
        .await?;
        // ... and the outage lasts its full length, drains backing off all the while.
        crate::support::poll_until(OUTAGE * 2, || async {
            Ok((started.elapsed() >= OUTAGE).then_some(()))
        })
        .await?;
        let during = worker.metrics(&env.http).await?;
        let received = e2e::counter(&during, "flowpilot_messages_received_total");
        let drains = e2e::counter(&during, "flowpilot_drains_scheduled_total");

        // The outage ends: everything completes.
        env.set_faults(&runs_lasting(200, 300)).await?;
        let mut done = Vec::new();
        for id in &ids {
            done.push(
                env.wait_for(id, "live after the outage", Duration::from_secs(90), is_live)
                    .await?,
            );
        }
        let secs = secs(started);
        env.health_until(&mut seen, Duration::from_secs(30), |events| {
            count(&health_counts(events), "Workflow Completed") >= ids.len()
        })
        .await?;

        // One stall event per workflow, however many drains and reconcile passes found it stuck.
        let stalls = stalled_workflows(&seen);
        for id in &ids {
            let n = stalls.get(id.as_str()).copied().unwrap_or(0);
            ensure!(n == 1, "{id}: {n} distinct Workflow Stuck events");
        }
        // Bounded messages: per workflow its start command and the drains of a backoff from
        // 300 ms to 4 s over about 20 s (8), not a chain per reconcile pass (with a delayed
        // reconcile per stuck handling, the 1 s reconcile ticker alone makes 12 or more).
        let per_workflow = received as f64 / ids.len() as f64;
        eprintln!(
            "outage: {received} messages received ({per_workflow:.1} per workflow), {drains} drains scheduled"
        );
        ensure!(
            per_workflow <= 11.0,
            "{received} messages for {} workflows during a {OUTAGE:?} outage: drains multiplied",
            ids.len()
        );
        ensure!(drains >= ids.len() as u64, "only {drains} drains were scheduled");
        worker.assert_no_panic()?;
        let from = DateTime::<Utc>::from_naive_utc_and_offset(first.and_time(Default::default()), Utc);
        let to = from + chrono::TimeDelta::days(14 * 20);
        let ledger = env.ledger_check(OBJECT_TYPE, from, to).await?;
        ledger.ensure_complete("20 workflows after the outage")?;
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

/// A worker for the live-generation scenarios: a lost End report is given 15 s (not 2) before
/// a rebuild settles for AppFlow's execution record, so a slow machine cannot turn a late report
/// into re-written records and the ledger must come out exact.
fn patient_worker(env: &Env) -> anyhow::Result<e2e::Worker> {
    env.spawn_worker("a", &[("FLOWPILOT_DESCRIBE_AFTER", "15s")])
}

/// Polls until live flow `flow` has at least `n` successful runs.
async fn wait_live_successes(env: &Env, flow: &str, n: usize) -> anyhow::Result<()> {
    poll_every(POLL, Duration::from_secs(60), || async {
        let runs = env.runs().await?;
        let ok = runs_of(&runs, flow)
            .iter()
            .filter(|r| r["status"] == "Successful")
            .count();
        Ok((ok >= n).then_some(()))
    })
    .await
    .with_context(|| format!("{flow} never succeeded {n} time(s)"))
}

/// Polls until the work queue is empty (nothing visible, in flight or delayed): every message
/// sent before was handled.
async fn wait_queue_empty(env: &Env) -> anyhow::Result<()> {
    poll_every(POLL, Duration::from_secs(60), || async {
        Ok((env.queue_counts(&env.stack.queue_url).await? == (0, 0, 0)).then_some(()))
    })
    .await
    .context("work queue never drained")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_end_report_of_the_previous_generation_does_not_count_against_the_next()
-> anyhow::Result<()> {
    scenario("late gen-1 report after rebuild", async {
        let env = Env::start(
            "lateend",
            SimSetup {
                tick_ms: 1000,
                ..sim_setup(chaos::short_runs(), chaos::seed(12))
            },
        )
        .await?;
        let worker = patient_worker(&env)?;
        let mut args = live_args("lateend");
        // One failure would degrade the integration: a report that counts shows at once.
        args.extra
            .extend(["--degraded-threshold".into(), "1".into()]);
        let started = Instant::now();
        let id = env.create_workflow(&args).await?;
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(90), is_live)
            .await?;
        let backfill_to = wf.spec.to;
        let gen1 = live_flow(&id);
        wait_live_successes(&env, &gen1, 1).await?;

        env.cli(&["integration", "rebuild", id.as_str()]).await?;
        let wf2 = env
            .wait_for(&id, "generation 2", Duration::from_secs(60), |w| {
                is_live(w) && w.live.as_ref().is_some_and(|l| l.generation == 2)
            })
            .await?;
        // Generation 2's flow, as the workflow names it (checked against the naming rule last,
        // so that the scenario shows what a late report does whatever the names).
        let gen2 = wf2
            .live
            .as_ref()
            .map(|l| l.flow_name.clone())
            .ok_or_else(|| anyhow!("no live integration"))?;
        let from2 = wf2
            .live
            .as_ref()
            .map(|l| l.first_execution_from)
            .ok_or_else(|| anyhow!("no live integration"))?;
        wait_live_pull_end(&env, &gen2, from2)
            .await
            .context("generation 2 never ran")?;
        let secs = secs(started);

        // Generation 1's reports arrive again, late (SQS and EventBridge deliver at least
        // once), plus a failed run and a deactivation of its flow nobody had heard of yet.
        let gen1_ends: Vec<Value> = end_reports(&env)
            .await?
            .into_iter()
            .filter(|e| e["detail"]["flow-name"] == gen1.as_str())
            .collect();
        let last = gen1_ends
            .last()
            .ok_or_else(|| anyhow!("no End report of {gen1}"))?;
        let mut bodies: Vec<String> = gen1_ends
            .iter()
            .enumerate()
            .map(|(n, e)| appflow_envelope(e, n).to_string())
            .collect();
        let mut failed = last.clone();
        failed["detail"]["execution-id"] = json!(uuid::Uuid::new_v4().to_string());
        failed["detail"]["status"] = json!("Execution Failed");
        failed["detail"]["error"] = json!("INVALID_SESSION_ID: Session expired or invalid");
        bodies.push(appflow_envelope(&failed, bodies.len()).to_string());
        let deactivated = json!({
            "detail-type": "AppFlow Scheduled Flow Deactivated",
            "detail": {
                "flow-name": gen1,
                "flow-arn": last["detail"]["flow-arn"],
                "deactivation-reason": "Flow deactivated after 2 consecutive failed runs",
            },
        });
        bodies.push(appflow_envelope(&deactivated, bodies.len()).to_string());
        let before = env.load(&id).await?;
        env.send_raw(&bodies).await?;
        wait_queue_empty(&env).await?;
        ensure!(
            env.dlq_depth().await? == 0,
            "the injected reports went to the DLQ"
        );

        let after = env.load(&id).await?;
        let (b, a) = match (&before.live, &after.live) {
            (Some(b), Some(a)) => (b, a),
            _ => anyhow::bail!("no live integration"),
        };
        ensure!(
            after.status == WorkflowStatus::Live
                && a.generation == 2
                && a.consecutive_failures == 0
                && a.runs_failed == b.runs_failed,
            "generation 1's late reports counted against generation 2: {:?}, {a:?}",
            after.status
        );
        let health = crate::support::drain_available(&env.sqs, &env.stack.health_tap_url).await?;
        let degraded = count(&health_counts(&health), "Integration Degraded");
        ensure!(degraded == 0, "{degraded} Integration Degraded event(s)");
        ensure!(
            gen2 == live_flow_of(&id, 2) && gen2 != gen1,
            "generation 2's flow is {gen2}"
        );

        // Every record of the integration's window, once: from the backfill's end to the end of
        // generation 2's last successful pull.
        let runs = env.runs().await?;
        let t_end = last_live_pull_end(&runs, &gen2)?
            .ok_or_else(|| anyhow!("no successful run of {gen2}"))?;
        let ledger = env.ledger_check(OBJECT_TYPE, backfill_to, t_end).await?;
        ledger.ensure_complete("from the backfill's end through generation 2")?;
        worker.assert_no_panic()?;
        eprintln!(
            "{} late reports of {gen1} ignored; [{backfill_to}, {t_end}): {ledger:?}",
            bodies.len()
        );
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}

/// Distinct `Workflow Stuck` events per workflow id.
fn stalled_workflows(events: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut ids = std::collections::BTreeSet::new();
    let mut per = std::collections::BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e["detail-type"] == "Workflow Stuck")
    {
        if ids.insert(
            e["detail"]["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ) {
            *per.entry(
                e["detail"]["workflow_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_insert(0) += 1;
        }
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_while_a_live_run_is_in_flight_waits_for_it_and_resumes_after_it()
-> anyhow::Result<()> {
    scenario("rebuild with a live run in flight", async {
        let env = Env::start(
            "inflight",
            SimSetup {
                tick_ms: 300,
                ..sim_setup(chaos::short_runs(), chaos::seed(13))
            },
        )
        .await?;
        let worker = patient_worker(&env)?;
        let started = Instant::now();
        let id = env.create_workflow(&live_args("inflight")).await?;
        let wf = env
            .wait_for(&id, "live", Duration::from_secs(90), is_live)
            .await?;
        let backfill_to = wf.spec.to;
        let gen1 = live_flow(&id);
        wait_live_successes(&env, &gen1, 1).await?;

        // From now on a run takes 6 s: catch one of generation 1 in flight and rebuild.
        let slow_from = Utc::now();
        env.set_faults(&runs_lasting(6_000, 6_000)).await?;
        let inflight = poll_every(POLL, Duration::from_secs(30), || async {
            let runs = env.runs().await?;
            Ok(runs_of(&runs, &gen1)
                .into_iter()
                .find(|r| {
                    r["status"] == "InProgress"
                        && time(&r["started_at"]).is_ok_and(|t| t > slow_from)
                })
                .and_then(|r| r["execution_id"].as_str().map(str::to_owned)))
        })
        .await
        .context("no slow run of generation 1 started")?;
        env.cli(&["integration", "rebuild", id.as_str()]).await?;
        // The run in flight keeps its 6 s; the next generation's runs are quick again.
        env.set_faults(&chaos::short_runs()).await?;
        let wf = env
            .wait_for(&id, "generation 2", Duration::from_secs(60), |w| {
                is_live(w) && w.live.as_ref().is_some_and(|l| l.generation == 2)
            })
            .await?;
        let (gen2, from2) = wf
            .live
            .as_ref()
            .map(|l| (l.flow_name.clone(), l.first_execution_from))
            .ok_or_else(|| anyhow!("no live integration"))?;
        // The run in flight ends by itself (flowpilot waited for it, or left it to finish).
        let run = poll_every(POLL, Duration::from_secs(30), || async {
            let runs = env.runs().await?;
            Ok(runs_of(&runs, &gen1)
                .into_iter()
                .find(|r| r["execution_id"] == inflight.as_str() && r["status"] != "InProgress")
                .cloned())
        })
        .await
        .with_context(|| format!("run {inflight} never ended"))?;
        ensure!(
            run["status"] == "Successful",
            "the run in flight did not succeed: {run}"
        );
        let t_in = time(&run["incremental_to"])?;
        let t2 = wait_live_pull_end(&env, &gen2, from2)
            .await
            .context("generation 2 never ran")?;
        let secs = secs(started);
        let ledger = env
            .ledger_check(OBJECT_TYPE, backfill_to, t2.max(t_in))
            .await?;
        // Generation 2 starts where the run in flight stopped pulling, not where the last run
        // before it did (which would pull that run's window a second time).
        ensure!(
            from2 == t_in,
            "generation 2 starts at {from2}, not at the end of the run in flight ({t_in}); \
             ledger {ledger:?}"
        );
        ensure!(
            gen2 == live_flow_of(&id, 2),
            "generation 2's flow is {gen2}"
        );
        // Nothing of generation 1 ran after it was stopped, and its flow is gone.
        let runs = env.runs().await?;
        let ended = time(&run["ended_at"])?;
        let later: Vec<&Value> = runs_of(&runs, &gen1)
            .into_iter()
            .filter(|r| time(&r["started_at"]).is_ok_and(|t| t > ended))
            .collect();
        ensure!(later.is_empty(), "{gen1} ran after the rebuild: {later:?}");
        let flows = env.flows().await?;
        ensure!(
            !flows.to_string().contains(&format!("\"{gen1}\"")),
            "{gen1} was not deleted: {flows}"
        );
        ledger.ensure_complete("from the backfill's end through generation 2's first run")?;
        worker.assert_no_panic()?;
        eprintln!(
            "run {inflight} in flight until {t_in}; generation 2 from {from2} to {t2}: {ledger:?}"
        );
        Outcome::after_shutdown(env, ledger, secs).await
    })
    .await
}
