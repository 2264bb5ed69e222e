//! Throughput benchmark on the local stack (moto + simulator, IAM enforced, one real worker
//! process holding the deployed worker role).
//!
//! Per scenario (N concurrent two-year Salesforce workflows of 12 batches, one batch at a time
//! each, simulated runs of a fixed length) it prints:
//! - batches/s, and that rate as a fraction of the local stack's ceiling, measured in the same
//!   run by a calibration phase: the minimal request mix of one batch (the End report through
//!   EventBridge into SQS, ReceiveMessage, one PutItem, CreateFlow, StartFlow, DeleteFlow, one
//!   PutEvents, DeleteMessage) replayed against the same moto and simulator, with the worker's
//!   credentials, by many concurrent lanes, as fast as they take it;
//! - run end → next run start, p50/p99/max, from the simulator's run records;
//! - AWS requests per batch by service and operation (every attempt, from the worker's own
//!   counter), and on the critical path (requests from receiving an End report to the next
//!   StartFlow);
//! - worker CPU per handled message (to the nanosecond, with the kernel's share) and peak RSS,
//!   with the SDK's own floor for that many requests: before the scenarios, a client configured
//!   as the worker's calls a do-nothing server on loopback and its thread's CPU per request is
//!   measured (`support/sdk_floor.rs`).
//!
//! Then DynamoDB bytes written per transition for 12-, 131-, 500- and 1,826-batch workflows (the item
//! size a write is billed by, replayed through `decide` without AWS).
//!
//! `cargo bench --bench throughput` (optimised), or in the dev profile:
//! `FLOWPILOT_BENCH=1 cargo test --bench throughput`. Knobs: `FLOWPILOT_BENCH_SCENARIOS`
//! (workflow counts, default `4,20,200`), `FLOWPILOT_BENCH_RUN_MS` (run length, default 400),
//! `FLOWPILOT_BENCH_LANES` (calibration concurrency, default 16), `FLOWPILOT_BENCH_CONCURRENCY`
//! (the worker's `FLOWPILOT_CONCURRENCY`, default: the number of lanes), `FLOWPILOT_BENCH_BUDGET=1`
//! (keep the worker's default run and flow limits instead of turning them off). An empty
//! `FLOWPILOT_BENCH_SCENARIOS=` runs only the DynamoDB size table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is its job

#[allow(unused_imports)] // the benchmark uses part of the test harness
#[path = "../tests/e2e/support/mod.rs"]
mod support;

#[path = "support/sdk_floor.rs"]
mod sdk_floor;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use chrono::{DateTime, Utc};
use flowpilot::aws::Clients;
use flowpilot::aws::appflow::AppFlow;
use flowpilot::aws::health::HealthPublisher;
use flowpilot::core::decide::{Policy, decide};
use flowpilot::core::effect::{EffectKind, Outcome};
use flowpilot::core::ids::{FlowRole, WorkflowId, flow_name};
use flowpilot::core::input::{Input, RunReport};
use flowpilot::core::model::{Workflow, WorkflowStatus};
use flowpilot::core::spec::SpecInput;
use flowpilot::metrics::Metrics;
use flowpilot::store::dynamo::{DynamoStore, WriteCost};
use flowpilot_sim::{DurationRange, FaultPlan};
use serde_json::Value;
use support::e2e::{self, Env, KMS_ARN, SimSetup, WorkflowArgs};

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let invoked_as_bench = std::env::args().any(|a| a == "--bench");
    if !invoked_as_bench && std::env::var_os("FLOWPILOT_BENCH").is_none() {
        println!(
            "throughput: skipped (run `cargo bench --bench throughput` or set FLOWPILOT_BENCH=1)"
        );
        return Ok(());
    }
    let scenarios: Vec<u64> = std::env::var("FLOWPILOT_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "4,20,200".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let floor = if scenarios.is_empty() {
        None
    } else {
        let f = sdk_floor::measure()?;
        println!(
            "SDK floor: client CPU per request, the worker's SDK configuration against a do-nothing server on loopback: \
             {:.0} us (GetItem) and {:.0} us (PutItem of a 5.6 KB document) back to back; {:.0} us (GetItem) after 5 ms idle",
            f.get_item_us, f.put_item_us, f.get_item_idle_us
        );
        Some(f)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for n in scenarios {
        rt.block_on(scenario(n, floor.as_ref()))?;
    }
    item_sizes()?;
    Ok(())
}

async fn scenario(n: u64, floor: Option<&sdk_floor::SdkFloor>) -> anyhow::Result<()> {
    let run_ms = env_u64("FLOWPILOT_BENCH_RUN_MS", 400);
    let lanes = env_u64("FLOWPILOT_BENCH_LANES", 16);
    let env = Env::start(
        &format!("bench{n}"),
        SimSetup {
            faults: FaultPlan {
                run_duration_ms: DurationRange {
                    min: run_ms,
                    max: run_ms,
                },
                ..FaultPlan::default()
            },
            ..SimSetup::default()
        },
    )
    .await?;
    // An alerting system consuming the health events, as one would in production. Without it the
    // tap queue only grows, and moto scans every message of a queue on each send to it, so the
    // stack (not flowpilot) would slow down with every event published.
    let subscriber = tokio::spawn(subscribe(env.sqs.clone(), env.stack.health_tap_url.clone()));

    let ceiling = calibrate(&env, lanes as usize, Duration::from_secs(10)).await?;
    latency_floor(&env).await?;

    // Production timings (no fast reconcile ticks: they would add requests), little logging.
    // As many messages in hand at once as the calibration has lanes: more only queues at the
    // local stack (moto serves one request at a time under Python's GIL, whatever the threads).
    let worker_concurrency = env_u64("FLOWPILOT_BENCH_CONCURRENCY", lanes).to_string();
    let mut settings = vec![
        ("FLOWPILOT_CONCURRENCY", worker_concurrency.as_str()),
        ("RUST_LOG", "warn,flowpilot::worker=info"),
    ];
    // The shared run budget (default 5 runs per profile) would cap 200 workflows at 5 runs at
    // once; by default these figures are the per-batch path without it. With
    // FLOWPILOT_BENCH_BUDGET=1 the worker keeps its default limits, and each start and each
    // flow's creation and deletion also writes a budget item: what that costs per batch.
    let budget = std::env::var("FLOWPILOT_BENCH_BUDGET").is_ok_and(|v| v == "1");
    if !budget {
        settings.push(("FLOWPILOT_PROFILE_RUN_LIMIT", "0"));
        settings.push(("FLOWPILOT_FLOW_LIMIT", "0"));
    }
    let mut worker = env.spawn_default_worker("a", &settings)?;
    let pid = worker.pid()?;
    // The worker is up once it serves metrics: only then does the clock start.
    worker.metrics_url().await?;
    // Start-up (SDK configuration, certificates, the first connections) is not per message.
    let cpu_at_start = cpu_precise(pid)?;
    let sys_at_start = sys_seconds(pid)?;

    let started = Instant::now();
    let all: Vec<WorkflowArgs> = (0..n)
        .map(|i| {
            WorkflowArgs::new(
                &format!("bench-{i}"),
                "2024-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "P2M",
            )
        })
        .collect();
    let ids = env.create_workflows(&all, 8).await?;
    // Watch the simulator (in this process) until every workflow's continuous flow exists, and
    // only then read the state table: polling the table all along would put a GetItem every
    // 50 ms into moto, which serves one request at a time, and so into the worker's critical
    // path. Every 5 s one workflow still without it is read, so a workflow that ended some
    // other way stops the benchmark instead of leaving it waiting.
    let polls = std::cell::Cell::new(0u64);
    support::poll_until(Duration::from_secs(1800), || async {
        let flows = env.flows().await?;
        let names: std::collections::HashSet<&str> = flows["flows"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
            .unwrap_or_default();
        let waiting = ids
            .iter()
            .find(|id| !names.contains(e2e::live_flow(id).as_str()));
        polls.set(polls.get() + 1);
        if let Some(id) = waiting.filter(|_| polls.get().is_multiple_of(100)) {
            let wf = env.load(id).await?;
            ensure!(
                !wf.status.is_terminal(),
                "{id} ended {}",
                wf.status.as_str()
            );
        }
        Ok(waiting.is_none().then_some(()))
    })
    .await?;
    let mut batches = 0usize;
    for id in &ids {
        let wf = support::poll_until(Duration::from_secs(1800), || async {
            let wf = env.load(id).await?;
            ensure!(
                !wf.status.is_terminal(),
                "{id} ended {}",
                wf.status.as_str()
            );
            Ok((wf.status == WorkflowStatus::Live).then_some(wf))
        })
        .await?;
        batches += wf.batches.len();
    }
    let wall = started.elapsed();

    // What the worker process used, read before it stops.
    let cpu = cpu_precise(pid)? - cpu_at_start;
    let sys = sys_seconds(pid)? - sys_at_start;
    let rss_kb = peak_rss_kb(pid)?;
    let metrics = worker.metrics(&env.http).await?;
    worker.kill9().await?;
    subscriber.abort();

    let runs = env.runs().await?;
    let gaps = run_gaps(&runs, &ids)?;
    let by_service = requests_by_service(&metrics);
    let handled = e2e::counter(&metrics, "flowpilot_messages_handled_total");
    let paths = e2e::counter(&metrics, "flowpilot_critical_paths_total");
    let path_requests = e2e::counter(&metrics, "flowpilot_critical_path_requests_total");
    let path_micros = e2e::counter(&metrics, "flowpilot_critical_path_microseconds_total");

    let rate = batches as f64 / wall.as_secs_f64();
    println!(
        "\nflowpilot throughput: {n} workflow(s) x 12 batches, one batch at a time each, runs of {run_ms} ms, shared budget {}",
        if budget {
            "on (worker defaults)"
        } else {
            "off"
        }
    );
    println!("  wall time            {:>10.2} s", wall.as_secs_f64());
    println!("  batches              {batches:>10}");
    println!(
        "  batches/s            {rate:>10.2}  ({:.0}% of the stack's ceiling {ceiling:.2}/s; run-bound ideal {:.2}/s)",
        100.0 * rate / ceiling.max(1e-9),
        n as f64 * 1000.0 / run_ms as f64
    );
    println!(
        "  run end -> next start p50 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms  ({} gaps)",
        percentile(&gaps, 0.50),
        percentile(&gaps, 0.99),
        gaps.iter().copied().fold(0.0, f64::max),
        gaps.len()
    );
    println!("  AWS requests per batch (worker, every attempt):");
    let mut total = 0.0;
    for (service, operations) in &by_service {
        let per = operations.values().sum::<u64>() as f64 / batches.max(1) as f64;
        total += per;
        let detail: Vec<String> = operations
            .iter()
            .map(|(op, n)| format!("{op} {:.2}", *n as f64 / batches.max(1) as f64))
            .collect();
        println!("    {service:<20} {per:>8.2}  ({})", detail.join(", "));
    }
    println!("    {:<20} {total:>8.2}", "all services");
    println!(
        "  critical path        {:>10.2} requests from an End report to the next StartFlow, {:.1} ms in the worker on average ({paths} measured)",
        path_requests as f64 / paths.max(1) as f64,
        path_micros as f64 / 1000.0 / paths.max(1) as f64
    );
    let received = e2e::counter(&metrics, "flowpilot_messages_received_total");
    println!("  messages received    {received:>10}  (handled {handled})");
    println!(
        "  worker CPU / message {:>10.3} ms  ({cpu:.3} s while handling, of which about {sys:.2} s in the kernel; {cpu_at_start:.3} s to start)",
        cpu * 1000.0 / handled.max(1) as f64
    );
    if let Some(f) = floor {
        let per_message = total * batches as f64 / handled.max(1) as f64;
        println!(
            "    SDK floor for its {per_message:.2} requests per message: {:.3} ms back to back, {:.3} ms after idle (GetItem's)",
            per_message * f.get_item_us / 1000.0,
            per_message * f.get_item_idle_us / 1000.0
        );
    }
    println!(
        "  worker peak RSS      {:>10.1} MiB",
        rss_kb as f64 / 1024.0
    );
    env.shutdown().await;
    Ok(())
}

/// The local stack's ceiling in batches/s: `lanes` concurrent loops of one batch's minimal
/// request mix, for `for_how_long`, through the same front with the worker's credentials.
/// Each lane creates and starts a flow (whose run's End report the simulator publishes through
/// the rule into the work queue, as for a real batch), writes the workflow item, deletes the
/// flow and publishes a health event; one receiver takes the End reports off the queue and
/// deletes them, until it has every one the lanes' runs produced.
async fn calibrate(env: &Env, lanes: usize, for_how_long: Duration) -> anyhow::Result<f64> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sdk = env.sdk_as(support::WORKER_PROFILE).await;
    let clients = Clients::new(&sdk, &Metrics::new());
    let spec = SpecInput {
        domain: Some(e2e::DOMAIN.into()),
        object_type: Some(e2e::OBJECT_TYPE.into()),
        connector: Some("salesforce".into()),
        connector_profile: Some(e2e::PROFILE.into()),
        object: Some("Account".into()),
        from: Some("2024-01-01".into()),
        to: Some("2024-03-01".into()),
        bulk_threshold: Some("P1D".into()),
        kms_arn: Some(KMS_ARN.into()),
        ..SpecInput::default()
    }
    .validate(Utc::now())
    .map_err(|e| anyhow!("{e}"))?;
    let started = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let lanes_done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + for_how_long;
    let clock = Instant::now();
    let receiver = {
        let (sqs, queue_url) = (clients.sqs.clone(), env.stack.queue_url.clone());
        let (started, received, lanes_done) = (
            Arc::clone(&started),
            Arc::clone(&received),
            Arc::clone(&lanes_done),
        );
        tokio::spawn(async move {
            let give_up = deadline + Duration::from_secs(60);
            loop {
                let all_in = lanes_done.load(Ordering::SeqCst) == lanes
                    && received.load(Ordering::SeqCst) >= started.load(Ordering::SeqCst);
                if all_in || Instant::now() > give_up {
                    break;
                }
                let got = sqs
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await?;
                let entries: Vec<_> = got
                    .messages()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| {
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                            .build()
                            .ok()
                    })
                    .collect();
                if !entries.is_empty() {
                    let n = entries.len();
                    sqs.delete_message_batch()
                        .queue_url(&queue_url)
                        .set_entries(Some(entries))
                        .send()
                        .await?;
                    received.fetch_add(n, Ordering::SeqCst);
                }
            }
            anyhow::Ok(())
        })
    };
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let (clients, spec) = (clients.clone(), spec.clone());
        let (started, lanes_done) = (Arc::clone(&started), Arc::clone(&lanes_done));
        let (table, bus) = (env.stack.table.clone(), env.stack.health_bus.clone());
        tasks.push(tokio::spawn(async move {
            let appflow = AppFlow::new(clients.appflow.clone());
            let health = HealthPublisher::new(clients.events.clone(), &bus);
            let store = DynamoStore::new(clients.dynamodb.clone(), &table);
            let mut round = 0u32;
            while Instant::now() < deadline {
                let id = WorkflowId::new(format!("calib-{lane}-{round}"))?;
                let wf = Workflow::new(id.clone(), spec.clone(), Utc::now());
                let t = decide(&wf, Input::Start, Utc::now(), &Policy::default());
                let flow = t
                    .effects
                    .iter()
                    .find_map(|e| match &e.kind {
                        EffectKind::CreateFlow { flow } => Some(flow.clone()),
                        _ => None,
                    })
                    .context("no CreateFlow")?;
                let event = t.effects.iter().find_map(|e| match &e.kind {
                    EffectKind::Publish { event } => Some(event.clone()),
                    _ => None,
                });
                appflow
                    .create_flow(&flow)
                    .await
                    .map_err(|e| anyhow!(e.message))?;
                appflow
                    .start_flow(&flow.name, &format!("{id}:0:1"))
                    .await
                    .map_err(|e| anyhow!(e.message))?;
                started.fetch_add(1, Ordering::SeqCst);
                flowpilot::store::Store::create(&store, &wf).await?;
                // Forced: the run may still be going (its End report still comes).
                appflow
                    .delete_flow(&flow.name)
                    .await
                    .map_err(|e| anyhow!(e.message))?;
                if let Some(event) = event {
                    health.publish(&[event]).await;
                }
                round += 1;
            }
            lanes_done.fetch_add(1, Ordering::SeqCst);
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    receiver.await??;
    let (n, got) = (
        started.load(Ordering::SeqCst),
        received.load(Ordering::SeqCst),
    );
    ensure!(
        got >= n,
        "calibration: only {got} of {n} End reports arrived"
    );
    let rate = n as f64 / clock.elapsed().as_secs_f64();
    println!(
        "\ncalibration: {lanes} lanes of one batch's minimal request mix: {rate:.2} batches/s"
    );
    Ok(rate)
}

/// The local stack's own floor for "run end → next run start": an End report put on the
/// default bus reaching a waiting long-poll receive (through the rule, as the simulator's
/// reports do), plus one conditional PutItem of a workflow item and one StartFlow, each timed
/// alone with the worker's credentials through the same front. No worker can beat their sum.
async fn latency_floor(env: &Env) -> anyhow::Result<()> {
    let sdk = env.sdk_as(support::WORKER_PROFILE).await;
    let clients = Clients::new(&sdk, &Metrics::new());
    let observer = aws_sdk_eventbridge::Client::new(&env.sdk);
    let appflow = AppFlow::new(clients.appflow.clone());
    let store = DynamoStore::new(clients.dynamodb.clone(), &env.stack.table);
    let spec = SpecInput {
        domain: Some(e2e::DOMAIN.into()),
        object_type: Some(e2e::OBJECT_TYPE.into()),
        connector: Some("salesforce".into()),
        connector_profile: Some(e2e::PROFILE.into()),
        object: Some("Account".into()),
        from: Some("2024-01-01".into()),
        to: Some("2026-01-01".into()),
        kms_arn: Some(KMS_ARN.into()),
        ..SpecInput::default()
    }
    .validate(Utc::now())
    .map_err(|e| anyhow!("{e}"))?;
    let (mut delivery, mut write, mut start) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..20 {
        let sqs = clients.sqs.clone();
        let queue_url = env.stack.queue_url.clone();
        let waiting = tokio::spawn(async move {
            let got = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(1)
                .wait_time_seconds(5)
                .send()
                .await?;
            let at = Instant::now();
            for m in got.messages() {
                if let Some(r) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(r)
                        .send()
                        .await?;
                }
            }
            anyhow::Ok(at)
        });
        // Let the receive reach the queue before the report is put.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let sent = Instant::now();
        observer
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.appflow")
                    .detail_type("AppFlow End Flow Run Report")
                    .detail(
                        serde_json::json!({"flow-name": format!("fp-floor-{i}-b0000"), "status": "Execution Successful"})
                            .to_string(),
                    )
                    .build(),
            )
            .send()
            .await?;
        delivery.push((waiting.await?? - sent).as_secs_f64() * 1000.0);
    }
    // Writes and starts after every delivery probe: the runs they start end later and their
    // End reports must not be taken for a probe's.
    for i in 0..20 {
        let id = WorkflowId::new(format!("floor-{i}"))?;
        let wf = Workflow::new(id.clone(), spec.clone(), Utc::now());
        let t = Instant::now();
        flowpilot::store::Store::create(&store, &wf).await?;
        write.push(t.elapsed().as_secs_f64() * 1000.0);
        let flow = decide(&wf, Input::Start, Utc::now(), &Policy::default())
            .effects
            .iter()
            .find_map(|e| match &e.kind {
                EffectKind::CreateFlow { flow } => Some(flow.clone()),
                _ => None,
            })
            .context("no CreateFlow")?;
        appflow
            .create_flow(&flow)
            .await
            .map_err(|e| anyhow!(e.message))?;
        let t = Instant::now();
        appflow
            .start_flow(&flow.name, &format!("{id}:0:1"))
            .await
            .map_err(|e| anyhow!(e.message))?;
        start.push(t.elapsed().as_secs_f64() * 1000.0);
        appflow
            .delete_flow(&flow.name)
            .await
            .map_err(|e| anyhow!(e.message))?;
    }
    // Take those runs' End reports off the queue before the worker starts.
    let mut left = 20usize;
    let until = Instant::now() + Duration::from_secs(60);
    while left > 0 && Instant::now() < until {
        let got = clients
            .sqs
            .receive_message()
            .queue_url(&env.stack.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for m in got.messages() {
            if let Some(r) = m.receipt_handle() {
                clients
                    .sqs
                    .delete_message()
                    .queue_url(&env.stack.queue_url)
                    .receipt_handle(r)
                    .send()
                    .await?;
                left = left.saturating_sub(1);
            }
        }
    }
    ensure!(
        left == 0,
        "{left} End reports of the latency probes never arrived"
    );
    let (d, w, s) = (
        percentile(&delivery, 0.5),
        percentile(&write, 0.5),
        percentile(&start, 0.5),
    );
    println!(
        "latency floor: End report delivered to a waiting receive {d:.1} ms + PutItem {w:.1} ms + StartFlow {s:.1} ms = {:.1} ms (p50s)",
        d + w + s
    );
    Ok(())
}

/// For every workflow, the time between one batch run's end and the next batch run's start
/// (milliseconds), from the simulator's run records.
fn run_gaps(runs: &Value, ids: &[WorkflowId]) -> anyhow::Result<Vec<f64>> {
    let time = |v: &Value| -> Option<DateTime<Utc>> { serde_json::from_value(v.clone()).ok() };
    let mut gaps = Vec::new();
    for id in ids {
        let mut by_batch: BTreeMap<u32, (DateTime<Utc>, Option<DateTime<Utc>>)> = BTreeMap::new();
        for i in 0..12u32 {
            let name = flow_name(id, FlowRole::Batch(i));
            // The last run of the batch is the one that succeeded.
            if let Some(r) = e2e::runs_of(runs, &name).last()
                && let Some(start) = time(&r["started_at"])
            {
                by_batch.insert(i, (start, time(&r["ended_at"])));
            }
        }
        for (i, (_, end)) in &by_batch {
            if let (Some(end), Some((next_start, _))) = (end, by_batch.get(&(i + 1))) {
                gaps.push((*next_start - *end).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    Ok(gaps)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// DynamoDB bytes per write while a workflow of 12, 131, 500 and 1,826 batches runs to live:
/// what every transition a fair run produces writes (the header's conditional PutItem, and the
/// chunk items put before it when the frontier crosses a group), replayed through `decide`.
fn item_sizes() -> anyhow::Result<()> {
    println!(
        "\nDynamoDB bytes written per transition (header PutItem + chunk PutItems; chunk DeleteItems after):"
    );
    for (_planned, batch_size, to) in [
        (12, "P2M", "2026-01-01"),
        (131, "P14D", "2029-01-08"),
        (500, "P3D", "2028-02-08"),
        (1826, "P1D", "2028-12-31"),
    ] {
        let spec = SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            from: Some("2024-01-01".into()),
            to: Some(to.into()),
            batch_size: Some(batch_size.into()),
            kms_arn: Some(KMS_ARN.into()),
            ..SpecInput::default()
        }
        .validate(Utc::now())
        .map_err(|e| anyhow!("{e}"))?;
        let mut wf = Workflow::new(WorkflowId::new("wf-size")?, spec, Utc::now());
        let n = wf.batches.len();
        let policy = Policy::default();
        let (created, mut stored) = DynamoStore::write_cost(&wf, &[])?;
        let mut costs: Vec<WriteCost> = Vec::new();
        let mut single: Vec<usize> = Vec::new();
        let mut feed = |wf: &mut Workflow,
                        input: Input|
         -> anyhow::Result<Vec<flowpilot::core::effect::Effect>> {
            let t = decide(wf, input, Utc::now(), &policy);
            if !t.is_noop(wf) {
                let (cost, refs) = DynamoStore::write_cost(&t.workflow, &stored)?;
                costs.push(cost);
                // What the single-item layout wrote: the whole document every time.
                single.push(serde_json::to_string(&t.workflow)?.len());
                stored = refs;
            }
            *wf = t.workflow;
            Ok(t.effects)
        };
        let mut effects = feed(&mut wf, Input::Start)?;
        for i in 0..n as u32 {
            // Execute everything pending (the run of batch i starts), then it ends.
            let outcomes: Vec<Outcome> = wf
                .outbox
                .iter()
                .map(|e| match &e.kind {
                    EffectKind::StartFlow { role, attempt, .. } => Outcome::Started {
                        key: e.key.clone(),
                        role: *role,
                        attempt: *attempt,
                        execution_id: Some(format!("exec-{}", e.key)),
                    },
                    _ => Outcome::Done { key: e.key.clone() },
                })
                .collect();
            effects.clear();
            // Folded into the next transition's write, as the worker does.
            let t = decide(&wf, Input::Applied(outcomes), Utc::now(), &policy);
            wf = t.workflow;
            let name = flow_name(&wf.id, FlowRole::Batch(i));
            effects.extend(feed(
                &mut wf,
                Input::RunEnded(RunReport {
                    flow_name: name,
                    role: FlowRole::Batch(i),
                    execution_id: Some(format!("exec-b{i}/a1/start")),
                    succeeded: true,
                    error: None,
                    records_processed: Some(3000),
                    record_failures: Some(0),
                    record_failure_message: None,
                    pull_start: None,
                    pull_end: None,
                    ended_at: None,
                }),
            )?);
        }
        ensure!(
            matches!(wf.status, WorkflowStatus::Linking | WorkflowStatus::Live),
            "{n}-batch replay ended {}",
            wf.status.as_str()
        );
        let units = |b: usize| b.div_ceil(1024);
        let n_t = costs.len().max(1) as f64;
        let headers: Vec<usize> = costs.iter().map(|c| c.header_bytes).collect();
        let avg = headers.iter().sum::<usize>() as f64 / n_t;
        let max = headers.iter().copied().max().unwrap_or(0);
        let with_chunks: Vec<&WriteCost> =
            costs.iter().filter(|c| !c.chunk_bytes.is_empty()).collect();
        let chunk_max = costs
            .iter()
            .flat_map(|c| c.chunk_bytes.iter().copied())
            .max()
            .unwrap_or(0);
        let wcu: usize = costs
            .iter()
            .map(|c| units(c.header_bytes) + c.chunk_bytes.iter().map(|&b| units(b)).sum::<usize>())
            .sum();
        let deletes: usize = costs.iter().map(|c| c.deleted).sum();
        println!(
            "  {n:>4} batches: {:>4} transitions, header {avg:>7.0} bytes on average, {max:>7} at most; \
             {} transitions also put chunks (largest {chunk_max} bytes), {deletes} chunk deletes; \
             {:.2} write units per transition (one item of the whole document: {:.0} bytes, \
             {:.2} units); creation: header {} bytes + {} chunks",
            costs.len(),
            with_chunks.len(),
            wcu as f64 / n_t,
            single.iter().sum::<usize>() as f64 / n_t,
            single.iter().map(|&b| units(b)).sum::<usize>() as f64 / n_t,
            created.header_bytes,
            created.chunk_bytes.len(),
        );
    }
    Ok(())
}

/// Receives and deletes health events from the tap until aborted.
async fn subscribe(sqs: aws_sdk_sqs::Client, tap_url: String) {
    loop {
        if let Err(e) = support::queue::receive_batch(&sqs, &tap_url, 1).await {
            eprintln!("health subscriber: {e:#}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// CPU time of `pid`'s threads alive now, in seconds, to the nanosecond (`/proc/PID/task/*/schedstat`):
/// `/proc/PID/stat` counts in clock ticks (10 ms), too coarse for a 4-workflow run. The
/// worker's runtime is one thread, so little can be missed by threads that ended.
fn cpu_precise(pid: u32) -> anyhow::Result<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between listing and reading.
        ns += schedstat_ns(&task?.path().join("schedstat")).unwrap_or(0);
    }
    Ok(ns as f64 / 1e9)
}

/// The time on CPU in a `schedstat` file (its first field, nanoseconds); `None` if unreadable.
fn schedstat_ns(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kernel CPU time of `pid` in seconds (stime, in clock ticks): syscalls, wake-ups, loopback TCP.
fn sys_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc stat: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[12].parse::<u64>()? as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{pid}/status"))
}

/// The worker's request counter by service, each with its operations.
fn requests_by_service(metrics: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("flowpilot_aws_requests_total{service=\"") else {
            continue;
        };
        let Some((service, tail)) = rest.split_once('"') else {
            continue;
        };
        let operation = tail
            .split_once("operation=\"")
            .and_then(|(_, t)| t.split_once('"'))
            .map_or("?", |(op, _)| op);
        let value: u64 = tail
            .rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        *out.entry(service.to_owned())
            .or_default()
            .entry(operation.to_owned())
            .or_insert(0) += value;
    }
    out
}
