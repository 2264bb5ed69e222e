//! Issue 14, no 500-batch ceiling: five years in daily batches (1,826 of them) plans, runs and
//! completes, with every record written exactly once. Finished and untouched batches live in
//! chunk items beside the workflow's header (README, "Storage layout"): the table shows them,
//! and listings never take one for a workflow.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use aws_sdk_dynamodb::types::AttributeValue;
use flowpilot::core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot::store::layout::CHUNK_BATCHES;

use crate::support::chaos::short_runs;
use crate::support::e2e::{Env, SimSetup, WorkflowArgs};

const DEADLINE: Duration = Duration::from_secs(900);
const DAYS: usize = 1826;

fn settled(wf: &Workflow) -> bool {
    (wf.status == WorkflowStatus::Live && wf.outbox.is_empty()) || wf.status.is_terminal()
}

/// The items of the table whose key starts with `prefix`, with their sizes (bytes of `doc` or
/// `batches`).
async fn items(env: &Env, prefix: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let client = aws_sdk_dynamodb::Client::new(&env.sdk);
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(&env.stack.table)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in page.items() {
            let pk = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if pk.starts_with(prefix) {
                let size = ["doc", "batches"]
                    .iter()
                    .filter_map(|a| item.get(*a).and_then(|v: &AttributeValue| v.as_s().ok()))
                    .map(String::len)
                    .sum();
                out.push((pk, size));
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_five_year_daily_workflow_plans_runs_and_completes() -> anyhow::Result<()> {
    let mut plan = short_runs();
    plan.run_duration_ms.min = 10;
    plan.run_duration_ms.max = 40;
    let env = Env::start(
        "long",
        SimSetup {
            faults: plan,
            ..SimSetup::default()
        },
    )
    .await?;
    let _worker = env.spawn_worker("long", &[("FLOWPILOT_CONCURRENCY", "32")])?;
    let mut args = WorkflowArgs::new("five-years", "2020-01-01", "2024-12-31T00:00:00Z", "P1D");
    args.concurrency = 32;
    let began = Instant::now();
    let id = env.create_workflow(&args).await?;

    // Planned in full, most of it in chunk items from the start.
    let planned = env.load(&id).await?;
    ensure!(
        planned.batches.len() == DAYS,
        "{} batches planned",
        planned.batches.len()
    );
    let chunks = items(&env, "wfchunk#five-years#").await?;
    ensure!(
        chunks.len() >= DAYS / CHUNK_BATCHES - 2,
        "chunk items at creation: {chunks:?}"
    );

    let wf = env
        .wait_for(&id, "five-years settled", DEADLINE, settled)
        .await?;
    let wall = began.elapsed();
    ensure!(
        wf.status == WorkflowStatus::Live,
        "five-years is {}:\n{}",
        wf.status.as_str(),
        flowpilot::cli::workflow::status_text(&wf, chrono::Utc::now())
    );
    ensure!(
        wf.batches.len() == DAYS
            && wf
                .batches
                .iter()
                .all(|b| b.status == BatchStatus::Succeeded),
        "not every batch succeeded"
    );
    for (i, b) in wf.batches.iter().enumerate() {
        ensure!(b.index as usize == i, "batch {i} holds index {}", b.index);
    }

    let from = "2020-01-01T00:00:00Z".parse()?;
    let to = "2024-12-31T00:00:00Z".parse()?;
    let ledger = env
        .ledger_check(crate::support::e2e::OBJECT_TYPE, from, to)
        .await?;
    ledger.ensure_complete("five-years")?;
    ensure!(
        ledger.missing() == 0 && ledger.duplicates == 0,
        "{ledger:?}"
    );

    let text = env.cli(&["workflow", "status", id.as_str()]).await?;
    ensure!(text.contains(&format!("{DAYS}/{DAYS} succeeded")), "{text}");
    let list = env.cli(&["workflow", "list", "--all"]).await?;
    ensure!(
        list.matches("five-years").count() == 1 && !list.contains("unreadable"),
        "{list}"
    );

    // Finished: every full group is a chunk; the header keeps the partial tail.
    let header = items(&env, "wf#five-years").await?;
    let chunks = items(&env, "wfchunk#five-years#").await?;
    ensure!(chunks.len() == DAYS / CHUNK_BATCHES, "{chunks:?}");
    let largest = chunks.iter().map(|c| c.1).max().context("no chunk")?;
    println!(
        "five-years: {DAYS} batches live after {:.1} s; header {} bytes, {} chunks of at most {largest} bytes; {ledger:?}",
        wall.as_secs_f64(),
        header.first().map_or(0, |h| h.1),
        chunks.len(),
    );
    Ok(())
}
