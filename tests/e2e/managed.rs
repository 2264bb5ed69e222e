//! `--engine managed` end to end (issue 13): the worker submits flowpilot's batches as one
//! Customer Profiles CreateIntegrationWorkflow with the deployed `AppFlowExecutionRole`, the
//! simulator runs them as that role under IAM, and the worker turns GetWorkflow /
//! GetWorkflowSteps into the same health events its own engine publishes; a failed managed
//! workflow is redriven with only its missing batches; the continuous integration it created
//! is found and watched.

use std::time::Duration;

use crate::support::chaos::{failing_runs, short_runs};
use crate::support::e2e::{
    Env, OBJECT_TYPE, POLL, SimSetup, WorkflowArgs, count, health_counts, poll_every, runs_of,
};
use anyhow::{Context as _, anyhow, ensure};
use chrono::{DateTime, Utc};
use flowpilot::core::ids::WorkflowId;
use flowpilot::core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot::core::spec::Engine;
use serde_json::Value;

const FROM: &str = "2024-01-01T00:00:00Z";
const TO: &str = "2026-01-01T00:00:00Z";
const DEADLINE: Duration = Duration::from_secs(150);
const HEALTH_DEADLINE: Duration = Duration::from_secs(60);

/// A two-year Salesforce import in two-month batches (twelve), run by the managed engine.
fn managed(id: &str) -> WorkflowArgs {
    let mut a = WorkflowArgs::new(id, FROM, TO, "P2M");
    a.extra = vec!["--engine".into(), "managed".into()];
    a
}

/// A worker holding the execution role's ARN, as the template's task definition gives it.
fn spawn(env: &Env) -> anyhow::Result<crate::support::e2e::Worker> {
    let role = env.stack.execution_role_arn.clone();
    env.spawn_worker("a", &[("FLOWPILOT_MANAGED_ROLE_ARN", role.as_str())])
}

fn live_and_settled(wf: &Workflow) -> bool {
    (wf.status == WorkflowStatus::Live && wf.outbox.is_empty() && wf.live.is_some())
        || wf.status.is_terminal()
}

fn status(wf: &Workflow) -> String {
    flowpilot::cli::workflow::status_text(wf, Utc::now())
}

/// The events of workflow `id`, by detail-type.
fn of(events: &[Value], id: &WorkflowId) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["detail"]["workflow_id"] == id.as_str())
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_managed_two_year_salesforce_import_completes_with_flowpilots_events()
-> anyhow::Result<()> {
    let env = Env::start(
        "managed",
        SimSetup {
            faults: short_runs(),
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = spawn(&env)?;
    let id = env.create_workflow(&managed("mg-complete")).await?;
    let wf = env
        .wait_for(
            &id,
            "live, its integration watched",
            DEADLINE,
            live_and_settled,
        )
        .await?;
    ensure!(
        wf.status == WorkflowStatus::Live,
        "ended {}:\n{}",
        wf.status.as_str(),
        status(&wf)
    );
    ensure!(wf.spec.engine == Engine::Managed);
    ensure!(wf.batches.len() == 12, "{} batches", wf.batches.len());
    ensure!(
        wf.batches
            .iter()
            .all(|b| b.status == BatchStatus::Succeeded && b.records > 0),
        "{}",
        status(&wf)
    );
    // The managed workflow ran the batches (its step flows), flowpilot ran none of its own.
    let runs = env.runs().await?;
    let flows: Vec<&str> = runs["runs"]
        .as_array()
        .ok_or_else(|| anyhow!("runs: {runs}"))?
        .iter()
        .filter_map(|r| r["flow_name"].as_str())
        .collect();
    ensure!(
        flows
            .iter()
            .filter(|f| f.starts_with("fp-mg-complete-m1-s"))
            .count()
            == 12,
        "step runs: {flows:?}"
    );
    ensure!(
        !flows.iter().any(|f| f.starts_with("fp-mg-complete-b")),
        "flowpilot ran batch flows of its own: {flows:?}"
    );
    // The continuous integration Customer Profiles created is the one watched.
    let live = wf.live.as_ref().ok_or_else(|| anyhow!("no live"))?;
    ensure!(
        live.flow_name == "fp-mg-complete-m1-live" && live.uri.is_some(),
        "watched {live:?}"
    );

    env.ledger_check_all_writes(OBJECT_TYPE, FROM.parse()?, TO.parse()?)
        .await?
        .ensure_complete("managed backfill")?;

    let mut events = Vec::new();
    env.health_until(&mut events, HEALTH_DEADLINE, |all| {
        count(&health_counts(all), "Workflow Completed") >= 1
            && count(&health_counts(all), "Batch Succeeded") >= 12
    })
    .await?;
    let mine = of(&events, &id);
    let c = health_counts(&mine);
    ensure!(
        count(&c, "Workflow Started") == 1
            && count(&c, "Batch Succeeded") == 12
            && count(&c, "Workflow Completed") == 1,
        "events: {c:?}"
    );
    let (ok, report) = crate::schemas::validate(&mine).await?;
    ensure!(ok, "health events do not match their schemas: {report}");
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanently_failing_step_fails_the_workflow_and_redrive_runs_only_the_missing_batches()
-> anyhow::Result<()> {
    let mut faults = short_runs();
    // Step 4's flow (batch 4) fails for good: the managed workflow stops there.
    faults.run_failures = vec![failing_runs(
        "-m1-s4",
        Vec::new(),
        "INVALID_SESSION_ID: Session expired or invalid",
    )];
    let env = Env::start(
        "managed-redrive",
        SimSetup {
            faults,
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = spawn(&env)?;
    let id = env.create_workflow(&managed("mg-redrive")).await?;
    let failed = env
        .wait_for(&id, "failed", DEADLINE, |w| {
            w.status == WorkflowStatus::Failed && w.outbox.is_empty()
        })
        .await?;
    let done: Vec<u32> = failed
        .batches
        .iter()
        .filter(|b| b.status == BatchStatus::Succeeded)
        .map(|b| b.index)
        .collect();
    ensure!(
        done == vec![0, 1, 2, 3],
        "succeeded before the failure: {done:?}"
    );

    let mut events = Vec::new();
    env.health_until(&mut events, HEALTH_DEADLINE, |all| {
        count(&health_counts(all), "Workflow Failed") >= 1
    })
    .await?;
    let wf_failed = events
        .iter()
        .find(|e| e["detail-type"] == "Workflow Failed")
        .ok_or_else(|| anyhow!("no Workflow Failed"))?;
    let command = wf_failed["detail"]["command"]
        .as_str()
        .ok_or_else(|| anyhow!("Workflow Failed without a command: {wf_failed}"))?;
    ensure!(
        command == format!("flowpilot workflow redrive {id}"),
        "command {command}"
    );
    ensure!(
        wf_failed["detail"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("INVALID_SESSION_ID")),
        "Workflow Failed without the step's error: {wf_failed}"
    );
    let (ok, report) = crate::schemas::validate(&of(&events, &id)).await?;
    ensure!(ok, "health events do not match their schemas: {report}");

    // The cause fixed, the operator runs the command the event carries.
    env.set_faults(&short_runs()).await?;
    let argv: Vec<&str> = command.split_whitespace().skip(1).collect();
    env.cli(&argv)
        .await
        .context("the event's redrive command")?;
    // Failed is terminal too: wait for the redrive to have been taken first.
    let wf = env
        .wait_for(&id, "live after the redrive", DEADLINE, |w| {
            w.redrives >= 1 && live_and_settled(w)
        })
        .await?;
    ensure!(wf.status == WorkflowStatus::Live, "{}", status(&wf));
    let managed = wf
        .managed
        .as_ref()
        .ok_or_else(|| anyhow!("no managed run"))?;
    ensure!(
        managed.generation == 2 && managed.steps == (4..12).collect::<Vec<u32>>(),
        "the redrive submitted {:?} (generation {})",
        managed.steps,
        managed.generation
    );
    // Generation 2 ran exactly the eight missing batches; the four done ones never ran again.
    let runs = env.runs().await?;
    let flows: Vec<&str> = runs["runs"]
        .as_array()
        .ok_or_else(|| anyhow!("runs: {runs}"))?
        .iter()
        .filter_map(|r| r["flow_name"].as_str())
        .collect();
    let second = flows
        .iter()
        .filter(|f| f.starts_with("fp-mg-redrive-m2-s"))
        .count();
    ensure!(second == 8, "generation 2 runs: {flows:?}");
    let ledger = env
        .ledger_check_all_writes(OBJECT_TYPE, FROM.parse()?, TO.parse()?)
        .await?;
    ensure!(
        ledger.missing() == 0 && ledger.duplicates == 0,
        "ledger after the redrive: {ledger:?}"
    );
    ledger.ensure_complete("managed redrive")?;
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}

/// Where the successful runs of `flow` pulled up to, the furthest (its cursor advances on
/// success only, so its windows are contiguous).
fn last_pull_end(runs: &Value, flow: &str) -> Option<DateTime<Utc>> {
    runs_of(runs, flow)
        .into_iter()
        .filter(|r| r["status"] == "Successful")
        .filter_map(|r| serde_json::from_value::<DateTime<Utc>>(r["incremental_to"].clone()).ok())
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_managed_integration_degrades_and_is_rebuilt_with_flowpilots_flow_without_a_gap()
-> anyhow::Result<()> {
    let mut faults = short_runs();
    // The integration's flow (`…-m1-live`): its first run succeeds, the next three fail.
    faults.run_failures = vec![failing_runs(
        "-m1-live",
        vec![2, 3, 4],
        "INVALID_SESSION_ID: Session expired or invalid",
    )];
    let env = Env::start(
        "managed-rebuild",
        SimSetup {
            faults,
            // Scheduled flows tick every 700 ms (one simulated day each: `rate(1days)`).
            tick_ms: 700,
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = spawn(&env)?;
    let mut args = WorkflowArgs::new(
        "mg-rebuild",
        "2025-10-01T00:00:00Z",
        "2025-10-29T00:00:00Z",
        "P14D",
    );
    args.extra = [
        "--engine",
        "managed",
        "--schedule",
        "rate(1days)",
        "--auto-rebuild",
        "--degraded-threshold",
        "3",
    ]
    .map(str::to_owned)
    .to_vec();
    let id = env.create_workflow(&args).await?;
    let mut events = Vec::new();
    env.health_until(&mut events, Duration::from_secs(120), |all| {
        let c = health_counts(all);
        count(&c, "Integration Degraded") >= 1 && count(&c, "Integration Rebuilt") >= 1
    })
    .await?;
    env.set_faults(&short_runs()).await?;
    let wf = env
        .wait_for(&id, "rebuilt and live", DEADLINE, |w| {
            w.status == WorkflowStatus::Live
                && w.outbox.is_empty()
                && w.live.as_ref().is_some_and(|l| l.generation == 2)
        })
        .await?;
    let live = wf.live.clone().ok_or_else(|| anyhow!("no live"))?;
    ensure!(
        live.flow_name == "fp-mg-rebuild-live-g2",
        "rebuilt as {}",
        live.flow_name
    );
    let backfill_to = wf.spec.to;
    let runs = env.runs().await?;
    let t1 = last_pull_end(&runs, "fp-mg-rebuild-m1-live")
        .ok_or_else(|| anyhow!("the managed integration never pulled"))?;
    ensure!(
        live.first_execution_from == t1 && t1 > backfill_to,
        "rebuilt from {} instead of the managed flow's last good pull end {t1}",
        live.first_execution_from
    );
    // The managed flow is retired (stopped, deleted) before flowpilot's runs.
    let flows = env.flows().await?;
    ensure!(
        !flows.to_string().contains("\"fp-mg-rebuild-m1-live\""),
        "the managed integration's flow is still there: {flows}"
    );
    let t2 = poll_every(POLL, Duration::from_secs(30), || async {
        Ok(last_pull_end(&env.runs().await?, "fp-mg-rebuild-live-g2"))
    })
    .await
    .context("the rebuilt integration never ran")?;
    env.ledger_check(OBJECT_TYPE, backfill_to, t2)
        .await?
        .ensure_complete("from the backfill's end to the rebuilt integration's first run")?;
    env.ledger_check(OBJECT_TYPE, wf.spec.from, backfill_to)
        .await?
        .ensure_complete("managed backfill")?;
    let (ok, report) = crate::schemas::validate(&of(&events, &id)).await?;
    ensure!(ok, "health events do not match their schemas: {report}");
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_execution_role_setting_a_managed_workflow_fails_saying_so_and_cancel_deletes_the_managed_workflow()
-> anyhow::Result<()> {
    let env = Env::start(
        "managed-cancel",
        SimSetup {
            // Steps slow enough that the cancel finds the managed workflow running.
            faults: flowpilot_sim::FaultPlan {
                run_duration_ms: flowpilot_sim::DurationRange {
                    min: 5_000,
                    max: 6_000,
                },
                ..flowpilot_sim::FaultPlan::default()
            },
            ..SimSetup::default()
        },
    )
    .await?;
    // A worker without FLOWPILOT_MANAGED_ROLE_ARN: the workflow fails, naming the setting.
    let mut bare = env.spawn_worker("bare", &[])?;
    let id = env.create_workflow(&managed("mg-norole")).await?;
    let wf = env
        .wait_for(&id, "failed", DEADLINE, |w| w.status.is_terminal())
        .await?;
    let err = wf.last_error.map(|e| e.message).unwrap_or_default();
    ensure!(
        wf.status == WorkflowStatus::Failed && err.contains("FLOWPILOT_MANAGED_ROLE_ARN"),
        "without the role setting: {err}"
    );
    bare.kill9().await?;

    // With it, a running managed workflow is deleted by `workflow cancel`.
    let worker = spawn(&env)?;
    let id = env.create_workflow(&managed("mg-cancel")).await?;
    let wf = env
        .wait_for(&id, "submitted", DEADLINE, |w| {
            w.managed.as_ref().is_some_and(|m| m.workflow_id.is_some())
        })
        .await?;
    let managed_id = wf
        .managed
        .and_then(|m| m.workflow_id)
        .ok_or_else(|| anyhow!("no managed workflow id"))?;
    let cp =
        aws_sdk_customerprofiles::Client::new(&env.sdk_as(crate::support::ADMIN_PROFILE).await);
    let get = || {
        cp.get_workflow()
            .domain_name(crate::support::e2e::DOMAIN)
            .workflow_id(&managed_id)
            .send()
    };
    ensure!(get().await.is_ok(), "the managed workflow is not there");
    env.cli(&["workflow", "cancel", id.as_str()]).await?;
    let wf = env
        .wait_for(&id, "cancelled and cleaned up", DEADLINE, |w| {
            w.status == WorkflowStatus::Cancelled && w.outbox.is_empty()
        })
        .await?;
    ensure!(wf.status == WorkflowStatus::Cancelled);
    let gone = get().await;
    ensure!(
        gone.as_ref().err().and_then(|e| {
            use aws_sdk_customerprofiles::error::ProvideErrorMetadata as _;
            e.code()
        }) == Some("ResourceNotFoundException"),
        "after cancel, GetWorkflow answered {gone:?}"
    );
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}
