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

#[allow(unused_imports)] // the benchmark uses part of the test harness
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use chrono::{DateTime, Utc};
use flowpilot::core::ids::WorkflowId;
use flowpilot::core::model::WorkflowStatus;
use flowpilot::store::Store as _;
use flowpilot::store::dynamo::DynamoStore;
use flowpilot_sim::{DurationRange, EventsConfig, FaultPlan, SimConfig};
use serde_json::Value;
use tokio::process::Command;

const KMS_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
const PROFILE: &str = "sf-bench";

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

    let moto = support::Moto::start().await?;
    let stack = support::deploy_stack(&moto).await?;
    let sim = flowpilot_sim::start(SimConfig {
        tick_ms: 3_600_000,
        events: EventsConfig {
            disabled: false,
            endpoint_url: Some(moto.url.clone()),
            access_key_id: Some(support::ACCESS_KEY_ID.to_owned()),
            secret_access_key: Some(support::SECRET_ACCESS_KEY.to_owned()),
        },
        faults: FaultPlan {
            run_duration_ms: DurationRange {
                min: run_ms,
                max: run_ms,
            },
            ..FaultPlan::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let sim_url = sim.url();
    setup_sim(&sim_url).await?;
    let sdk = support::sdk_config(&moto.url).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &stack.table);
    let http = reqwest::Client::new();

    let mut penv = support::aws_env(&moto.url, &sim_url);
    penv.extend(stack.flowpilot_env());
    let log = support::scratch_dir().join(format!("bench-worker-{}.log", moto.port));
    let worker_concurrency = (n * per_wf).clamp(8, 64).to_string();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_flowpilot"))
        .arg("worker")
        .envs(penv.clone())
        .env("FLOWPILOT_METRICS_ADDR", "127.0.0.1:0")
        .env("FLOWPILOT_CONCURRENCY", &worker_concurrency)
        .env("RUST_LOG", "warn,flowpilot::worker=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    let pid = worker
        .id()
        .ok_or_else(|| anyhow!("worker exited at once"))?;
    let metrics_url = support::poll_until(Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(text.lines().find_map(|l| {
            l.split_once("serving /healthz and /metrics on ")
                .and_then(|(_, r)| r.split_whitespace().next().map(str::to_owned))
        }))
    })
    .await
    .context("worker metrics address")?;

    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("bench-{i}");
        let out = Command::new(env!("CARGO_BIN_EXE_flowpilot"))
            .args([
                "workflow",
                "create",
                "--id",
                &id,
                "--connector",
                "salesforce",
                "--connector-profile",
                PROFILE,
                "--object",
                "Account",
                "--domain",
                "bench",
                "--object-type",
                "Account",
                "--from",
                "2024-01-01",
                "--to",
                "2026-01-01",
                "--concurrency",
                &per_wf.to_string(),
                "--kms-arn",
                KMS_ARN,
                "--json",
            ])
            .envs(penv.clone())
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(WorkflowId::new(id)?);
    }
    let mut batches = 0usize;
    for id in &ids {
        let wf = support::poll_until(Duration::from_secs(600), || async {
            let wf = store
                .load(id)
                .await?
                .ok_or_else(|| anyhow!("{id} missing"))?;
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
    let metrics = http
        .get(format!("{metrics_url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let _ = worker.start_kill();
    let _ = worker.wait().await;

    let runs: Value = http
        .get(format!("{sim_url}/_sim/runs"))
        .send()
        .await?
        .json()
        .await?;
    let mut run_total = Duration::ZERO;
    for r in runs["runs"].as_array().into_iter().flatten() {
        let start: DateTime<Utc> = serde_json::from_value(r["started_at"].clone())?;
        let end: Option<DateTime<Utc>> = serde_json::from_value(r["ended_at"].clone())?;
        if let (Some(end), true) = (end, r["trigger"] == "OnDemand") {
            run_total += (end - start).to_std().unwrap_or_default();
        }
    }
    let events: Value = http
        .get(format!("{sim_url}/_sim/events"))
        .send()
        .await?
        .json()
        .await?;
    let sim_events = events["events"].as_array().map_or(0, Vec::len);

    let concurrency = (n * per_wf) as u32;
    let ideal = run_total / concurrency.max(1);
    let by_service = requests_by_service(&metrics);
    let handled = counter_sum(&metrics, "flowpilot_messages_handled_total");

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
    sim.shutdown().await;
    Ok(())
}

async fn setup_sim(sim_url: &str) -> anyhow::Result<()> {
    use aws_sdk_appflow::types::{
        ConnectionMode, ConnectorProfileConfig, ConnectorProfileProperties, ConnectorType,
        SalesforceConnectorProfileProperties,
    };
    let cfg = support::sdk_config(sim_url).await;
    aws_sdk_appflow::Client::new(&cfg)
        .create_connector_profile()
        .connector_profile_name(PROFILE)
        .connector_type(ConnectorType::Salesforce)
        .connection_mode(ConnectionMode::Public)
        .connector_profile_config(
            ConnectorProfileConfig::builder()
                .connector_profile_properties(
                    ConnectorProfileProperties::builder()
                        .salesforce(
                            SalesforceConnectorProfileProperties::builder()
                                .instance_url("https://example.my.salesforce.com")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await?;
    let cp = aws_sdk_customerprofiles::Client::new(&cfg);
    cp.create_domain()
        .domain_name("bench")
        .default_expiration_days(366)
        .send()
        .await?;
    cp.put_profile_object_type()
        .domain_name("bench")
        .object_type_name("Account")
        .description("bench")
        .send()
        .await?;
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

fn counter_sum(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        })
        .sum()
}
