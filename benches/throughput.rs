//! Throughput benchmark on the local stack (moto + simulator + a real worker process).
//!
//! Runs N concurrent two-year Salesforce workflows (12 batches each) and prints:
//! wall time vs the ideal (sum of run durations / concurrency), AWS requests per batch by
//! service (the worker's own request counter, plus the simulator's AppFlow events), worker CPU
//! seconds per handled message (`/proc/<pid>/stat`) and peak RSS (`VmHWM`).
//!
//! `cargo bench --bench throughput` (optimised), or in the dev profile:
//! `FLOWPILOT_BENCH=1 cargo test --bench throughput`. Knobs: `FLOWPILOT_BENCH_WORKFLOWS` (N,
//! default 4), `FLOWPILOT_BENCH_CONCURRENCY` (batches per workflow at once, default 1),
//! `FLOWPILOT_BENCH_RUN_MS` (simulated run duration, default 400).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
#[allow(unused_imports)] // the benchmark uses part of the test harness
#[path = "../tests/e2e/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use chrono::{DateTime, Utc};
use flowpilot::core::model::WorkflowStatus;
use flowpilot_sim::{DurationRange, FaultPlan};
use support::e2e::{self, Env, SimSetup, WorkflowArgs};

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
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let n = env_u64("FLOWPILOT_BENCH_WORKFLOWS", 4);
    let per_wf = env_u64("FLOWPILOT_BENCH_CONCURRENCY", 1);
    let run_ms = env_u64("FLOWPILOT_BENCH_RUN_MS", 400);

    let env = Env::start(
        "bench",
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
    // Production timings (no fast reconcile ticks: they would add requests), little logging.
    let worker_concurrency = (n * per_wf).clamp(8, 64).to_string();
    let mut worker = env.spawn_default_worker(
        "a",
        &[
            ("FLOWPILOT_CONCURRENCY", &worker_concurrency),
            ("RUST_LOG", "warn,flowpilot::worker=info"),
        ],
    )?;
    let pid = worker.pid()?;
    // The worker is up once it serves metrics: only then does the clock start.
    worker.metrics_url().await?;

    let started = Instant::now();
    let all: Vec<WorkflowArgs> = (0..n)
        .map(|i| WorkflowArgs {
            concurrency: per_wf as u32,
            ..WorkflowArgs::new(
                &format!("bench-{i}"),
                "2024-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "P2M",
            )
        })
        .collect();
    let ids = env.create_workflows(&all, 1).await?;
    let mut batches = 0usize;
    for id in &ids {
        let wf = support::poll_until(Duration::from_secs(600), || async {
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
    let cpu = cpu_seconds(pid)?;
    let rss_kb = peak_rss_kb(pid)?;
    let metrics = worker.metrics(&env.http).await?;
    worker.kill9().await?;

    let runs = env.runs().await?;
    let mut run_total = Duration::ZERO;
    for r in runs["runs"].as_array().into_iter().flatten() {
        let start: DateTime<Utc> = serde_json::from_value(r["started_at"].clone())?;
        let end: Option<DateTime<Utc>> = serde_json::from_value(r["ended_at"].clone())?;
        if let (Some(end), true) = (end, r["trigger"] == "OnDemand") {
            run_total += (end - start).to_std().unwrap_or_default();
        }
    }
    let events = env.sim_get("/_sim/events").await?;
    let sim_events = events["events"].as_array().map_or(0, Vec::len);

    let concurrency = (n * per_wf) as u32;
    let ideal = run_total / concurrency.max(1);
    let by_service = requests_by_service(&metrics);
    let handled = e2e::counter(&metrics, "flowpilot_messages_handled_total");

    println!(
        "\nflowpilot throughput: {n} workflow(s) x 12 batches, {per_wf} batch(es) at a time each, runs of {run_ms} ms"
    );
    println!("  wall time            {:>10.2} s", wall.as_secs_f64());
    println!(
        "  ideal                {:>10.2} s  (sum of run durations {:.2} s / concurrency {concurrency})",
        ideal.as_secs_f64(),
        run_total.as_secs_f64()
    );
    println!(
        "  overhead             {:>10.2} x ideal",
        wall.as_secs_f64() / ideal.as_secs_f64().max(1e-9)
    );
    println!("  batches              {batches:>10}");
    println!("  AWS requests per batch (worker, every attempt):");
    let mut total = 0.0;
    for (service, count) in &by_service {
        let per = *count as f64 / batches.max(1) as f64;
        total += per;
        println!("    {service:<20} {per:>8.2}");
    }
    println!("    {:<20} {total:>8.2}", "all services");
    println!(
        "  AppFlow events/batch {:>10.2}  (simulator PutEvents to the default bus)",
        sim_events as f64 / batches.max(1) as f64
    );
    println!("  messages handled     {handled:>10}");
    println!(
        "  worker CPU / message {:>10.2} ms  ({cpu:.2} s total)",
        cpu * 1000.0 / handled.max(1) as f64
    );
    println!(
        "  worker peak RSS      {:>10.1} MiB",
        rss_kb as f64 / 1024.0
    );
    env.shutdown().await;
    Ok(())
}

/// utime + stime of `pid` in seconds (`/proc/<pid>/stat`, fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: split after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc stat: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
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

fn requests_by_service(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("flowpilot_aws_requests_total{service=\"") else {
            continue;
        };
        let Some((service, tail)) = rest.split_once('"') else {
            continue;
        };
        let value: u64 = tail
            .rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        *out.entry(service.to_owned()).or_insert(0) += value;
    }
    out
}
