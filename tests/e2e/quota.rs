//! Issue 14, account quotas: AppFlow's own limits as the simulator enforces them
//! (`max_concurrent_runs_per_account`, `max_flows`, `max_run_time_ms`) and flowpilot's flow
//! limit (`FLOWPILOT_FLOW_LIMIT`).
//!
//! - The account's concurrent-run limit below flowpilot's run budget: StartFlow answers
//!   `ServiceQuotaExceededException`, the budget's limit is lowered, batches wait, nothing fails.
//! - `FLOWPILOT_FLOW_LIMIT=N`: never more than N flows in the account at once; and the
//!   simulator's flow quota below flowpilot's limit: CreateFlow refusals lower it, nothing fails.
//! - A window whose run would exceed the per-run time limit splits and completes exactly once.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use flowpilot::core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot::store::Store as _;
use flowpilot_sim::FaultPlan;
use serde_json::Value;

use crate::support::chaos::short_runs;
use crate::support::e2e::{Env, SimSetup, Worker, WorkflowArgs, poll_every};

const DEADLINE: Duration = Duration::from_secs(180);

fn settled(wf: &Workflow) -> bool {
    (wf.status == WorkflowStatus::Live && wf.outbox.is_empty()) || wf.status.is_terminal()
}

/// `n` workflows of four one-day batches each at concurrency 3, one object type each.
fn workflows(prefix: &str, n: usize) -> (Vec<String>, Vec<WorkflowArgs>) {
    let types: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let args = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut a = WorkflowArgs::new(
                &format!("{}{i}", prefix.to_ascii_lowercase()),
                "2024-03-01T00:00:00Z",
                "2024-03-05T00:00:00Z",
                "P1D",
            );
            a.concurrency = 3;
            a.object_type = t.clone();
            a
        })
        .collect();
    (types, args)
}

/// Waits for every workflow to settle; all must be live with every record written once.
async fn all_live_exactly_once(env: &Env, n: usize) -> anyhow::Result<Vec<Workflow>> {
    let done = poll_every(Duration::from_millis(300), DEADLINE, || async {
        let wfs = env.store.list_all().await?.workflows;
        Ok((wfs.len() == n && wfs.iter().all(settled)).then_some(wfs))
    })
    .await;
    let wfs = match done {
        Ok(wfs) => wfs,
        Err(e) => {
            let wfs = env.store.list_all().await?.workflows;
            let stuck: Vec<String> = wfs
                .iter()
                .filter(|w| !settled(w))
                .map(|w| flowpilot::cli::workflow::status_text(w, chrono::Utc::now()))
                .collect();
            // What the run budget holds says whether a slot leaked or the wait is elsewhere.
            let mut ledgers = Vec::new();
            for key in [
                format!("budget#profile#{}", crate::support::e2e::PROFILE),
                "budget#account".to_owned(),
                "budget#flows".to_owned(),
            ] {
                let doc = env.budget_ledger(&key).await.unwrap_or_default();
                ledgers.push(format!("{key}: {doc}"));
            }
            return Err(e.context(format!(
                "not settled:\n{}\nrun budget:\n{}",
                stuck.join("\n"),
                ledgers.join("\n")
            )));
        }
    };
    for wf in &wfs {
        ensure!(
            wf.status == WorkflowStatus::Live,
            "{} is {}:\n{}",
            wf.id,
            wf.status.as_str(),
            flowpilot::cli::workflow::status_text(wf, chrono::Utc::now())
        );
        ensure!(
            wf.batches
                .iter()
                .all(|b| b.status == BatchStatus::Succeeded),
            "{:#?}",
            wf.batches
        );
        env.workflow_ledger(wf)
            .await?
            .ensure_complete(wf.id.as_str())?;
    }
    Ok(wfs)
}

/// A counter's value over the label sets that contain every one of `labels`.
fn counter_with(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn num(v: &Value, key: &str) -> anyhow::Result<u64> {
    v[key]
        .as_u64()
        .with_context(|| format!("no `{key}` in {v}"))
}

async fn metrics(env: &Env, worker: &Worker) -> anyhow::Result<String> {
    worker.metrics(&env.http).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_run_quota_below_the_budget_lowers_it_and_nothing_fails() -> anyhow::Result<()> {
    const N: usize = 4;
    const ACCOUNT: u64 = 2;
    let (types, all) = workflows("QRun", N);
    let mut plan = short_runs();
    plan.run_duration_ms = flowpilot_sim::DurationRange { min: 300, max: 600 };
    plan.max_concurrent_runs_per_account = Some(ACCOUNT as u32);
    let env = Env::start(
        "quota-runs",
        SimSetup {
            faults: plan,
            object_types: types,
            ..SimSetup::default()
        },
    )
    .await?;
    // flowpilot believes five runs fit; the account takes two.
    let worker = env.spawn_worker(
        "quota-runs",
        &[
            ("FLOWPILOT_PROFILE_RUN_LIMIT", "5"),
            ("FLOWPILOT_SLOT_RETRY", "1s"),
            // A batch still refused a second after the first refusal is reported.
            ("FLOWPILOT_SLOT_WAIT_ALERT", "1s"),
        ],
    )?;
    env.create_workflows(&all, N).await?;
    all_live_exactly_once(&env, N).await?;

    let runs = env.runs().await?;
    let max = num(&runs, "max_concurrent_account")?;
    ensure!(
        max <= ACCOUNT,
        "{max} runs at once, the account allows {ACCOUNT}"
    );
    let refused = num(&runs["quota_refusals"], "start_flow")?;
    ensure!(refused > 0, "AppFlow never refused a start: {runs}");
    // Every refusal lowered the budget instead of failing a batch; the log says to what.
    let text = metrics(&env, &worker).await?;
    let lowered = counter_with(
        &text,
        "flowpilot_quota_refusals_total",
        &["operation=\"start_flow\"", "limit=\"profile\""],
    );
    ensure!(
        lowered == refused,
        "{lowered} lowered of {refused} refused:\n{text}"
    );
    let log = worker.log_text();
    ensure!(
        log.contains("AppFlow refused: quota; effective limit lowered to"),
        "no shrink in the log"
    );
    // Status for operators: a wait under the lowered limit says why it is lower.
    let mut events = Vec::new();
    let lowered_wait = |e: &Value| {
        e["detail-type"] == "Batch Waiting For Run Slot"
            && e["detail"]["error"]
                .as_str()
                .is_some_and(|m| m.contains("AppFlow refused: quota; effective limit lowered to"))
    };
    env.health_until(&mut events, Duration::from_secs(30), |all| {
        all.iter().any(lowered_wait)
    })
    .await
    .context("a `Batch Waiting For Run Slot` naming the lowered limit")?;
    let started = runs["runs"].as_array().map_or(0, Vec::len) as u64;
    ensure!(started >= (N * 4) as u64, "{started} runs");
    println!(
        "QUOTA|runs|account_limit={ACCOUNT}|max_concurrent={max}|refused={refused}|runs={started}"
    );
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_flow_limit_holds_and_a_lower_account_flow_quota_lowers_it() -> anyhow::Result<()> {
    const N: usize = 3;
    const LIMIT: u64 = 5;
    // Part 1: flowpilot's own limit; the simulator has no flow quota.
    let (types, all) = workflows("QFlow", N);
    let env = Env::start(
        "quota-flows",
        SimSetup {
            faults: short_runs(),
            object_types: types,
            ..SimSetup::default()
        },
    )
    .await?;
    let limit = LIMIT.to_string();
    let worker = env.spawn_worker(
        "quota-flows",
        &[
            ("FLOWPILOT_FLOW_LIMIT", limit.as_str()),
            ("FLOWPILOT_SLOT_RETRY", "1s"),
            // A live flow refused a slot waits in its outbox: drained again soon.
            ("FLOWPILOT_DRAIN_BASE", "1s"),
            ("FLOWPILOT_DRAIN_CAP", "2s"),
        ],
    )?;
    env.create_workflows(&all, N).await?;
    all_live_exactly_once(&env, N).await?;
    let flows = env.flows().await?;
    let max = num(&flows, "max_flows_at_once")?;
    ensure!(
        max <= LIMIT,
        "{max} flows at once, FLOWPILOT_FLOW_LIMIT={LIMIT}"
    );
    let text = metrics(&env, &worker).await?;
    let denied = counter_with(
        &text,
        "flowpilot_run_slots_total",
        &["result=\"denied\"", "limit=\"flows\""],
    );
    // Three workflows at concurrency 3 want nine batch flows (plus those created ahead).
    ensure!(denied > 0, "the flow limit never refused:\n{text}");
    println!("QUOTA|flows|limit={LIMIT}|max_flows={max}|denied={denied}");
    worker.assert_no_panic()?;
    drop(worker);
    env.shutdown().await;

    // Part 2: the account's flow quota is below flowpilot's default limit (900).
    const QUOTA: u32 = 5;
    let (types, all) = workflows("QQuota", N);
    let mut plan = short_runs();
    plan.max_flows = Some(QUOTA);
    let env = Env::start(
        "quota-flow-quota",
        SimSetup {
            faults: plan,
            object_types: types,
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = env.spawn_worker(
        "quota-flow-quota",
        &[
            ("FLOWPILOT_FLOW_LIMIT", "900"),
            ("FLOWPILOT_SLOT_RETRY", "1s"),
            ("FLOWPILOT_DRAIN_BASE", "1s"),
            ("FLOWPILOT_DRAIN_CAP", "2s"),
        ],
    )?;
    env.create_workflows(&all, N).await?;
    all_live_exactly_once(&env, N).await?;
    let flows = env.flows().await?;
    let max = num(&flows, "max_flows_at_once")?;
    ensure!(
        max <= u64::from(QUOTA),
        "{max} flows at once, quota {QUOTA}"
    );
    let runs = env.runs().await?;
    let refused = num(&runs["quota_refusals"], "create_flow")?;
    ensure!(refused > 0, "AppFlow never refused a CreateFlow: {runs}");
    let text = metrics(&env, &worker).await?;
    let lowered = counter_with(
        &text,
        "flowpilot_quota_refusals_total",
        &["operation=\"create_flow\"", "limit=\"flows\""],
    );
    ensure!(
        lowered == refused,
        "{lowered} lowered of {refused} refused:\n{text}"
    );
    println!("QUOTA|flow_quota|quota={QUOTA}|max_flows={max}|refused={refused}");
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_over_the_time_limit_splits_and_completes_exactly_once() -> anyhow::Result<()> {
    // 50 records a day at a simulated second each: a 4-day window needs 200 s, a 2-day one
    // 100 s, a day 50 s; the limit is 60 s, so the window splits twice down to days.
    let plan = FaultPlan {
        max_run_time_ms: Some(60_000),
        run_time_ms_per_record: 1_000,
        ..short_runs()
    };
    let env = Env::start(
        "quota-time",
        SimSetup {
            faults: plan,
            object_types: vec!["QTime".into()],
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = env.spawn_worker("quota-time", &[])?;
    let mut args = WorkflowArgs::new("qt", "2024-01-01", "2024-01-05T00:00:00Z", "P4D");
    args.object_type = "QTime".into();
    args.concurrency = 2;
    let id = env.create_workflow(&args).await?;
    let wf = env.wait_for(&id, "qt settled", DEADLINE, settled).await?;
    ensure!(
        wf.status == WorkflowStatus::Live,
        "qt is {}:\n{}",
        wf.status.as_str(),
        flowpilot::cli::workflow::status_text(&wf, chrono::Utc::now())
    );
    let splits = wf
        .batches
        .iter()
        .filter(|b| b.status == BatchStatus::Split)
        .count();
    ensure!(wf.batches.len() == 7 && splits == 3, "{:#?}", wf.batches);
    let from = "2024-01-01T00:00:00Z".parse()?;
    let to = "2024-01-05T00:00:00Z".parse()?;
    let ledger = env.ledger_check("QTime", from, to).await?;
    ledger.ensure_complete("qt")?;
    ensure!(
        (ledger.source, ledger.missing(), ledger.duplicates) == (200, 0, 0),
        "{ledger:?}"
    );
    let runs = env.runs().await?;
    let timed_out = runs["runs"]
        .as_array()
        .context("runs")?
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("maximum flow run time"))
        })
        .count();
    ensure!(timed_out == 3, "{runs}");
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}
