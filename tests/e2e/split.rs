//! Issue 14, adaptive windows: a batch window holding more records than the simulator's per-run
//! limit fails the way an oversized AppFlow run would, is split in two — recursively, down to
//! windows that fit — and the workflow completes with every record written exactly once; the
//! splits show in `workflow status` (text and JSON), in `Batch Split` health events and in the
//! metrics. Where halving would go below the split floor, the failure is retried as usual and
//! then fails the workflow. With `--target-records-per-run`, the windows not started yet are
//! re-planned from the density the first ones observed.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use flowpilot::core::ids::WorkflowId;
use flowpilot::core::model::{BatchStatus, Workflow, WorkflowStatus};
use serde_json::Value;

use crate::support::chaos::short_runs;
use crate::support::e2e::{Env, SimSetup, WorkflowArgs, count, counter, health_counts};

const DEADLINE: Duration = Duration::from_secs(150);
/// The simulator's source has 50 records a day: a 4-day window (200) splits into 2-day halves
/// (100), which split again into days (50), which fit.
const LIMIT: u64 = 60;

fn settled(wf: &Workflow) -> bool {
    (wf.status == WorkflowStatus::Live && wf.outbox.is_empty()) || wf.status.is_terminal()
}

fn failed(wf: &Workflow) -> bool {
    wf.status == WorkflowStatus::Failed && wf.outbox.is_empty()
}

fn about<'a>(events: &'a [Value], id: &WorkflowId, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["detail"]["workflow_id"] == id.as_str() && e["detail-type"] == kind)
        .collect()
}

async fn json_cli(env: &Env, args: &[&str]) -> anyhow::Result<Value> {
    let out = env.cli(args).await?;
    serde_json::from_str(&out).with_context(|| format!("{args:?} printed {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_over_the_per_run_record_limit_splits_and_completes_exactly_once()
-> anyhow::Result<()> {
    let mut plan = short_runs();
    plan.max_records_per_run = Some(LIMIT);
    let env = Env::start(
        "split",
        SimSetup {
            faults: plan,
            object_types: vec!["Split".into(), "Floor".into()],
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = env.spawn_worker("split", &[])?;
    // Two planned batches of 4 days (200 records each), two running at once.
    let mut split = WorkflowArgs::new("sp-ok", "2024-01-01", "2024-01-09T00:00:00Z", "P4D");
    split.object_type = "Split".into();
    split.concurrency = 2;
    // A floor of two days: the 2-day halves (100 records) cannot split again; retried once,
    // they fail the workflow.
    let mut floor = WorkflowArgs::new("sp-floor", "2024-02-01", "2024-02-05T00:00:00Z", "P4D");
    floor.object_type = "Floor".into();
    floor.extra = vec![
        "--split-floor".into(),
        "48h".into(),
        "--max-retries".into(),
        "1".into(),
    ];
    let split = env.create_workflow(&split).await?;
    let floor = env.create_workflow(&floor).await?;

    let wf = env
        .wait_for(&split, "sp-ok settled", DEADLINE, settled)
        .await?;
    ensure!(
        wf.status == WorkflowStatus::Live,
        "sp-ok is {}:\n{}",
        wf.status.as_str(),
        flowpilot::cli::workflow::status_text(&wf, chrono::Utc::now())
    );
    // 2 planned + 2×2 halves of 2 days + 4×2 halves of a day; 6 of them split.
    let splits = wf
        .batches
        .iter()
        .filter(|b| b.status == BatchStatus::Split)
        .count();
    ensure!(wf.batches.len() == 14 && splits == 6, "{:#?}", wf.batches);
    for b in wf.runnable_batches() {
        ensure!(
            b.status == BatchStatus::Succeeded
                && b.window.end - b.window.start == chrono::TimeDelta::days(1)
                && b.records == 50,
            "{b:?}"
        );
    }
    // The ledger is the judge: every record of the range written once, nothing else.
    let from = "2024-01-01T00:00:00Z".parse()?;
    let to = "2024-01-09T00:00:00Z".parse()?;
    let ledger = env.ledger_check("Split", from, to).await?;
    ledger.ensure_complete("sp-ok")?;
    ensure!(
        (ledger.source, ledger.missing(), ledger.duplicates) == (400, 0, 0),
        "{ledger:?}"
    );
    let all = env.ledger_check_all_writes("Split", from, to).await?;
    ensure!(all == ledger, "writes outside the range: {all:?}");
    // The simulator failed the oversized runs before they wrote anything.
    let runs = env.runs().await?;
    let mine: Vec<&Value> = runs["runs"]
        .as_array()
        .context("runs")?
        .iter()
        .filter(|r| {
            r["flow_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("fp-sp-ok-b"))
        })
        .collect();
    let too_big: Vec<&&Value> = mine
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("maximum number of records"))
        })
        .collect();
    ensure!(too_big.len() == 6, "{mine:#?}");
    ensure!(
        too_big.iter().all(|r| r["records_written"] == 0),
        "{too_big:#?}"
    );
    ensure!(
        mine.len() == 14,
        "one run per batch, none retried: {mine:#?}"
    );

    // Status, as people and machines read it.
    let text = env.cli(&["workflow", "status", split.as_str()]).await?;
    ensure!(
        text.contains("8/8 succeeded") && text.contains("(6 split in two)"),
        "{text}"
    );
    ensure!(
        text.contains(
            "split: batch 0 [2024-01-01T00:00:00+00:00, 2024-01-05T00:00:00+00:00) into batches 2 and 3: Flow run failed"
        ),
        "{text}"
    );
    let status = json_cli(&env, &["workflow", "status", split.as_str(), "--json"]).await?;
    ensure!(
        status["totals"]["batches"] == 8 && status["totals"]["split"] == 6,
        "{status}"
    );
    ensure!(
        status["batches"][0]["status"] == "split"
            && status["batches"][0]["split_into"] == serde_json::json!([2, 3])
            && status["batches"][2]["split_from"] == 0,
        "{status}"
    );

    // The floor: the 2-day halves fail, are retried once, then fail the workflow.
    let wf = env
        .wait_for(&floor, "sp-floor failed", DEADLINE, failed)
        .await?;
    ensure!(
        wf.batches.len() == 3 && wf.batches[0].status == BatchStatus::Split,
        "{:#?}",
        wf.batches
    );
    let half = wf
        .batches
        .iter()
        .find(|b| b.status == BatchStatus::Failed)
        .context("a failed half")?;
    ensure!(half.attempt == 2 && half.split_from == Some(0), "{half:?}");

    // Health events: one `Batch Split` per split, naming both halves.
    let mut events = Vec::new();
    env.health_until(&mut events, Duration::from_secs(60), |all| {
        count(&health_counts(all), "Batch Split") >= 7
            && count(&health_counts(all), "Workflow Completed") >= 1
            && count(&health_counts(all), "Workflow Failed") >= 1
    })
    .await?;
    let split_events = about(&events, &split, "Batch Split");
    ensure!(split_events.len() == 6, "{split_events:#?}");
    for e in &split_events {
        let d = &e["detail"];
        let halves = d["halves"].as_array().context("halves")?;
        ensure!(
            halves.len() == 2
                && halves[0]["start"] == d["batch"]["start"]
                && halves[0]["end"] == halves[1]["start"]
                && halves[1]["end"] == d["batch"]["end"]
                && d["error"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("per flow run ({LIMIT})")))
                && d["transient"] == true,
            "{e}"
        );
    }
    for kind in ["Batch Failed", "Batch Retry Scheduled", "Workflow Failed"] {
        ensure!(about(&events, &split, kind).is_empty(), "sp-ok: {kind}");
    }
    ensure!(about(&events, &floor, "Batch Split").len() == 1);
    ensure!(!about(&events, &floor, "Batch Retry Scheduled").is_empty());
    let (schemas_ok, report) = crate::schemas::validate(&events).await?;
    ensure!(schemas_ok, "{report}");

    let metrics = worker.metrics(&env.http).await?;
    ensure!(
        counter(&metrics, "flowpilot_batch_splits_total") == 7,
        "{metrics}"
    );
    worker.assert_no_panic()?;
    Ok(())
}

/// `--target-records-per-run`: after three daily windows (50 records each) completed, the
/// windows nobody started are re-planned to about 120 records each — fewer, longer runs — and
/// the ledger still holds every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_records_per_run_replans_later_windows_by_observed_density() -> anyhow::Result<()> {
    let env = Env::start(
        "replan",
        SimSetup {
            faults: short_runs(),
            object_types: vec!["Replan".into()],
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = env.spawn_worker("replan", &[])?;
    let mut args = WorkflowArgs::new("rp", "2024-03-01", "2024-03-11T00:00:00Z", "P1D");
    args.object_type = "Replan".into();
    args.extra = vec!["--target-records-per-run".into(), "120".into()];
    let id = env.create_workflow(&args).await?;
    let wf = env.wait_for(&id, "rp settled", DEADLINE, settled).await?;
    ensure!(wf.status == WorkflowStatus::Live, "{}", wf.status.as_str());
    // Batches 0-2 ran, batch 3's flow was prepared ahead: 6 days remain, at 50 records a day
    // 120 records is 2.4 days, so two windows of 3 days replace the 6 daily ones.
    let r = wf.replan.clone().context("a re-plan")?;
    ensure!(
        (r.observed_records, r.windows, r.replaced) == (150, 2, 6),
        "{r:?}"
    );
    let runnable: Vec<_> = wf.runnable_batches().collect();
    ensure!(runnable.len() == 6, "{:#?}", wf.batches);
    ensure!(
        runnable.iter().all(|b| b.status == BatchStatus::Succeeded
            && b.records == 50 * ((b.window.end - b.window.start).num_days() as u64)),
        "{runnable:#?}"
    );
    let from = "2024-03-01T00:00:00Z".parse()?;
    let to = "2024-03-11T00:00:00Z".parse()?;
    let ledger = env.ledger_check("Replan", from, to).await?;
    ledger.ensure_complete("rp")?;
    ensure!(ledger.source == 500, "{ledger:?}");
    let status = json_cli(&env, &["workflow", "status", id.as_str(), "--json"]).await?;
    ensure!(
        status["replan"]["windows"] == 2 && status["totals"]["batches"] == 6,
        "{status}"
    );
    let text = env.cli(&["workflow", "status", id.as_str()]).await?;
    ensure!(text.contains("re-planned: from 2024-03-05"), "{text}");
    worker.assert_no_panic()?;
    Ok(())
}
