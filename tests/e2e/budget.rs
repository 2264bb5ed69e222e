//! The shared run budget (issue 14, item 1): many workflows on one connector profile, two
//! workers (one killed with `kill -9` mid-way), and never more runs on the profile at once than
//! `FLOWPILOT_PROFILE_RUN_LIMIT` — the simulator's `max_concurrent_per_profile` proves it.
//!
//! Prints `BUDGET|workflows=N|…` with the spread of completion times: with the longest waiter
//! served first, no workflow starves (the last one finishes about when the budget's throughput
//! says it must, not after an unbounded wait).

use std::time::{Duration, Instant};

use crate::support::chaos::{WorkerPool, secs};
use crate::support::e2e::{Env, LedgerCheck, PROFILE, SimSetup, WorkflowArgs, poll_every};
use anyhow::{Context as _, ensure};
use chrono::Utc;
use flowpilot::core::model::{Workflow, WorkflowStatus};
use flowpilot::store::Store as _;
use flowpilot_sim::{DurationRange, FaultPlan};

const LIMIT: u32 = 5;

fn is_live(wf: &Workflow) -> bool {
    wf.status == WorkflowStatus::Live && wf.outbox.is_empty()
}

/// Seconds from each workflow's creation to its completion, sorted.
fn completion_secs(wfs: &[Workflow]) -> Vec<f64> {
    let mut v: Vec<f64> = wfs
        .iter()
        .filter_map(|w| Some((w.completed_at? - w.created_at).num_milliseconds() as f64 / 1e3))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_workflows_share_five_run_slots_across_two_workers_and_a_kill_nine()
-> anyhow::Result<()> {
    const N: usize = 30;
    let object_types: Vec<String> = (0..N).map(|i| format!("Bud{i:02}")).collect();
    let env = Env::start(
        "budget",
        SimSetup {
            object_types: object_types.clone(),
            faults: FaultPlan {
                run_duration_ms: DurationRange { min: 300, max: 600 },
                ..FaultPlan::default()
            },
            ..SimSetup::default()
        },
    )
    .await?;
    let limit = LIMIT.to_string();
    let mut pool = WorkerPool::start(
        &env,
        2,
        &[
            ("FLOWPILOT_PROFILE_RUN_LIMIT", limit.as_str()),
            ("FLOWPILOT_SLOT_RETRY", "1s"),
            ("FLOWPILOT_RECONCILE_EVERY", "2s"),
        ],
    )?;
    // Three batches each at concurrency 3: alone, every workflow would run all its batches at
    // once; together they ask for 90 slots of 5. One object type each, so every workflow's
    // ledger is checked on its own.
    let all: Vec<WorkflowArgs> = object_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut a = WorkflowArgs::new(
                &format!("bud{i:02}"),
                "2025-01-01T00:00:00Z",
                "2025-02-12T00:00:00Z",
                "P14D",
            );
            a.concurrency = 3;
            a.object_type = t.clone();
            a
        })
        .collect();
    let started = Instant::now();
    env.create_workflows(&all, 10).await?;

    // Mid-way: the first workflows are live and batches are waiting for slots; then one worker
    // dies holding whatever it held.
    let waiting_line = std::sync::Mutex::new(None::<String>);
    poll_every(
        Duration::from_millis(300),
        Duration::from_secs(240),
        || async {
            let wfs = env.store.list_all().await?.workflows;
            let mut seen = waiting_line.lock().unwrap();
            if seen.is_none() {
                *seen = wfs.iter().find_map(|w| {
                    let text = flowpilot::cli::workflow::status_text(w, Utc::now());
                    text.lines()
                        .find(|l| l.starts_with("waiting for a run slot on profile"))
                        .map(str::to_owned)
                });
            }
            let live = wfs.iter().filter(|w| is_live(w)).count();
            Ok((live >= N / 3 && seen.is_some()).then_some(()))
        },
    )
    .await
    .context("a third of the workflows live while others wait for a slot")?;
    let killed_at = secs(started);
    pool.kill_and_restart(&env, 0).await?;

    let done = poll_every(
        Duration::from_millis(500),
        Duration::from_secs(420),
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
    let total_secs = secs(started);

    let runs = env.runs().await?;
    let max = runs["max_concurrent_per_profile"][PROFILE]
        .as_u64()
        .context("no max_concurrent_per_profile for the profile")?;
    ensure!(
        max <= u64::from(LIMIT),
        "{max} runs at once on profile {PROFILE}, limit {LIMIT}"
    );
    // That the workflows competed is shown by the status line seen while they ran (a batch
    // refused a slot); how close to the limit they got depends on the machine's speed.
    let mut total = LedgerCheck::default();
    for wf in &wfs {
        let l = env.workflow_ledger(wf).await?;
        l.ensure_complete(wf.id.as_str())?;
        total.source += l.source;
        total.distinct += l.distinct;
        total.duplicates += l.duplicates;
    }
    ensure!(
        total.missing() == 0 && total.duplicates == 0,
        "missing {} duplicates {}",
        total.missing(),
        total.duplicates
    );
    let requests = pool
        .counter_total(&env, "flowpilot_run_slots_total")
        .await?;
    pool.ensure_healthy()?;

    let spread = completion_secs(&wfs);
    ensure!(spread.len() == N, "{} workflows completed", spread.len());
    let pct = |p: usize| spread[(spread.len() - 1) * p / 100];
    println!(
        "BUDGET|workflows={N}|concurrency=3|limit={LIMIT}|max_concurrent={max}|missing={}|dup={}|\
         first={:.1}s|median={:.1}s|p90={:.1}s|last={:.1}s|killed_at={killed_at:.1}s|total={total_secs:.1}s|slot_requests={requests}",
        total.missing(),
        total.duplicates,
        pct(0),
        pct(50),
        pct(90),
        pct(100),
    );
    let seen = waiting_line.lock().unwrap().clone().unwrap_or_default();
    eprintln!("status while waiting: {seen}");
    env.shutdown().await;
    Ok(())
}

/// The run slot of a batch that ended is freed by the same ledger write that takes the next
/// batch's slot: from an End report to the next StartFlow, the workflow's write, one budget
/// write, StartFlow. At the end no lease is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_batchs_slot_is_freed_by_the_write_that_takes_the_next() -> anyhow::Result<()> {
    let env = Env::start(
        "budgetfold",
        SimSetup {
            faults: FaultPlan {
                run_duration_ms: DurationRange { min: 200, max: 200 },
                ..FaultPlan::default()
            },
            ..SimSetup::default()
        },
    )
    .await?;
    // The worker's defaults: the run budget and the flow limit are on.
    let mut worker = env.spawn_default_worker("a", &[])?;
    let ids = env
        .create_workflows(
            &[WorkflowArgs::new(
                "fold",
                "2024-01-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
                "P2M",
            )],
            1,
        )
        .await?;
    let id = ids.first().context("no workflow created")?;
    poll_every(
        Duration::from_millis(200),
        Duration::from_secs(120),
        || async {
            let wf = env.load(id).await?;
            ensure!(!wf.status.is_terminal(), "ended {}", wf.status.as_str());
            Ok((wf.status == WorkflowStatus::Live).then_some(()))
        },
    )
    .await?;
    let metrics = worker.metrics(&env.http).await?;
    let paths = crate::support::e2e::counter(&metrics, "flowpilot_critical_paths_total");
    let requests = crate::support::e2e::counter(&metrics, "flowpilot_critical_path_requests_total");
    ensure!(
        paths == 5,
        "expected 5 End reports followed by a start, saw {paths}"
    );
    ensure!(
        requests == 3 * paths,
        "expected 3 requests per critical path (workflow write, budget write, StartFlow), saw {requests} over {paths}"
    );
    // Every batch's lease was given back (the live flow holds no run slot).
    let ledger = poll_every(
        Duration::from_millis(200),
        Duration::from_secs(30),
        || async {
            let doc = env
                .budget_ledger(&format!("budget#profile#{PROFILE}"))
                .await?;
            let holders = doc["holders"].as_object().map_or(0, |h| h.len());
            Ok((holders == 0).then_some(doc))
        },
    )
    .await
    .context("run slots still held after the workflow went live")?;
    ensure!(
        !ledger.is_null(),
        "the profile's budget item was never written"
    );
    ensure!(
        ledger["waiters"].as_object().is_none_or(|w| w.is_empty()),
        "waiters left: {ledger}"
    );
    worker.kill9().await?;
    env.shutdown().await;
    Ok(())
}
