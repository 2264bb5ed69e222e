//! Issue 10 acceptance: when objects are not sent. Record-level failures within and beyond
//! `--max-record-failures`, connector credentials that expire mid-backfill (reconnect, then
//! redrive), and a SaaS API allowance that runs out mid-backfill (the workflow pauses and
//! resumes), each end to end: worker and CLI processes holding the deployed roles, the
//! simulator's fault plan, the ledger as the judge of what arrived.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use flowpilot::core::ids::WorkflowId;
use flowpilot::core::model::{Workflow, WorkflowStatus};
use flowpilot_sim::{ApiBudget, CredentialExpiry, RecordFailure};
use serde_json::Value;

use crate::support::chaos::short_runs;
use crate::support::e2e::{
    Env, PROFILE, SimSetup, WorkflowArgs, batch_flow, count, counter, health_counts, runs_of,
};
use crate::support::{ADMIN_PROFILE, poll_until};

const DEADLINE: Duration = Duration::from_secs(150);
const MAPPING_ERROR: &str =
    "70 records could not be written to Customer Profiles: ObjectType mapping rejected the record";
const EXPIRED: &str = flowpilot_sim::faults::DEFAULT_EXPIRED_MESSAGE;

/// Live with nothing left to do, or stopped.
fn settled(wf: &Workflow) -> bool {
    (wf.status == WorkflowStatus::Live && wf.outbox.is_empty()) || wf.status.is_terminal()
}

/// Failed with nothing left to do (the record failures' DescribeRun, the events, are done).
fn failed(wf: &Workflow) -> bool {
    wf.status == WorkflowStatus::Failed && wf.outbox.is_empty()
}

fn ensure_status(wf: &Workflow, want: WorkflowStatus) -> anyhow::Result<()> {
    ensure!(
        wf.status == want,
        "workflow {} is {}, not {}:\n{}",
        wf.id,
        wf.status.as_str(),
        want.as_str(),
        flowpilot::cli::workflow::status_text(wf, chrono::Utc::now())
    );
    Ok(())
}

/// The health events about workflow `id`.
fn about<'a>(events: &'a [Value], id: &WorkflowId) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["detail"]["workflow_id"] == id.as_str())
        .collect()
}

fn of_kind<'a>(events: &[&'a Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .copied()
        .filter(|e| e["detail-type"] == kind)
        .collect()
}

async fn json_cli(env: &Env, args: &[&str]) -> anyhow::Result<Value> {
    let out = env.cli(args).await?;
    serde_json::from_str(&out).with_context(|| format!("{args:?} printed {out}"))
}

/// The findings of `workflow diagnose ID --json`, checking the contract's shape on the way.
async fn diagnose(env: &Env, id: &WorkflowId) -> anyhow::Result<Vec<Value>> {
    let v = json_cli(env, &["workflow", "diagnose", id.as_str(), "--json"]).await?;
    let top: Vec<&String> = v.as_object().context("an object")?.keys().collect();
    ensure!(top == ["findings", "workflow_id"], "top-level keys {top:?}");
    ensure!(v["workflow_id"] == id.as_str(), "{v}");
    let findings = v["findings"].as_array().context("findings")?.clone();
    for f in &findings {
        let keys: Vec<&String> = f.as_object().context("a finding object")?.keys().collect();
        ensure!(
            keys == [
                "batch",
                "command",
                "flow_name",
                "message",
                "problem",
                "recommendation",
                "records_failed"
            ],
            "finding keys {keys:?}"
        );
    }
    Ok(findings)
}

fn finding_of_batch(findings: &[Value], batch: u32) -> anyhow::Result<&Value> {
    findings
        .iter()
        .find(|f| f["batch"] == batch)
        .with_context(|| format!("no finding for batch {batch}: {findings:#?}"))
}

async fn sim_ledger(env: &Env, object_type: &str) -> anyhow::Result<Value> {
    env.sim_get(&format!(
        "/_sim/ledger?domain={}&object_type={object_type}",
        crate::support::e2e::DOMAIN
    ))
    .await
}

async fn profile_state(env: &Env) -> anyhow::Result<Value> {
    let all = env.sim_get("/_sim/profiles").await?;
    all["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == PROFILE)
        .cloned()
        .context("the connector profile in /_sim/profiles")
}

/// Records failing to write: within the budget the batch succeeds, marked, and everything says
/// so (event, status, diagnose, metrics); beyond it the batch and the workflow fail with a
/// redrive command, and the redrive writes the missing records — rewriting the ones already
/// there, which the events announced and the ledger counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_failures_are_marked_within_budget_and_fail_with_a_redrive_beyond_it()
-> anyhow::Result<()> {
    let rule = |suffix: &str| RecordFailure {
        flow_suffix: suffix.to_owned(),
        attempts: vec![1],
        from_attempt: None,
        to_attempt: None,
        fraction: 0.1,
        message: MAPPING_ERROR.to_owned(),
    };
    let mut plan = short_runs();
    plan.record_failures = vec![rule("ns-in-b0001"), rule("ns-out-b0001")];
    let env = Env::start(
        "not-sent",
        SimSetup {
            faults: plan,
            object_types: vec!["Within".into(), "Beyond".into()],
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = env.spawn_worker("ns", &[])?;
    // Two batches of 14 days: 700 records each, 70 of batch 1's fail to write.
    let mut within = WorkflowArgs::new("ns-in", "2024-01-01", "2024-01-29T00:00:00Z", "P14D");
    within.object_type = "Within".into();
    within.extra = vec!["--max-record-failures".into(), "100".into()];
    let mut beyond = WorkflowArgs::new("ns-out", "2024-01-01", "2024-01-29T00:00:00Z", "P14D");
    beyond.object_type = "Beyond".into();
    let within = env.create_workflow(&within).await?;
    let beyond = env.create_workflow(&beyond).await?;

    // Within budget: succeeded, marked.
    let wf = env
        .wait_for(&within, "ns-in settled", DEADLINE, settled)
        .await?;
    ensure_status(&wf, WorkflowStatus::Live)?;
    let b1 = &wf.batches[1];
    ensure!(b1.records_failed() == 70, "{b1:?}");
    let status = json_cli(&env, &["workflow", "status", within.as_str(), "--json"]).await?;
    ensure!(status["batches"][1]["records_failed"] == 70, "{status}");
    ensure!(status["batches"][0]["records_failed"] == 0, "{status}");
    ensure!(
        status["batches"][1]["records_failed_message"] == MAPPING_ERROR,
        "{status}"
    );
    ensure!(status["totals"]["records_failed"] == 70, "{status}");
    let text = env.cli(&["workflow", "status", within.as_str()]).await?;
    ensure!(
        text.contains(&format!(
            "not sent: batch 1: 70 of 700 records: {MAPPING_ERROR}"
        )),
        "{text}"
    );
    let findings = diagnose(&env, &within).await?;
    let f = finding_of_batch(&findings, 1)?;
    ensure!(
        f["problem"] == "records_not_sent"
            && f["records_failed"] == 70
            && f["message"] == MAPPING_ERROR
            && f["flow_name"] == batch_flow(&within, 1),
        "{f}"
    );
    ensure!(
        f["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("aws customer-profiles get-profile-object-type")),
        "{f}"
    );
    let live = findings
        .iter()
        .find(|f| f["batch"].is_null())
        .context("a finding for the live flow")?;
    ensure!(live["problem"] == "none", "{live}");
    let text = env.cli(&["workflow", "diagnose", within.as_str()]).await?;
    ensure!(
        text.contains("records not sent: 70") && text.contains(MAPPING_ERROR),
        "{text}"
    );
    // The succeeded batch's flow was deleted: said so, not an AppFlow error.
    ensure!(
        text.contains("AppFlow flow: deleted") && !text.contains("cannot"),
        "{text}"
    );
    // The ledger tells the truth: exactly the 70 records are missing, nothing written twice.
    let ledger = env
        .ledger_check(
            "Within",
            "2024-01-01T00:00:00Z".parse()?,
            "2024-01-29T00:00:00Z".parse()?,
        )
        .await?;
    ensure!(
        (ledger.source, ledger.missing(), ledger.duplicates) == (1400, 70, 0),
        "{ledger:?}"
    );
    ensure!(
        sim_ledger(&env, "Within").await?["failed_records_missing"] == 70,
        "simulator ledger"
    );

    // Beyond the budget (0): the batch and the workflow fail, with a redrive command.
    let wf = env
        .wait_for(&beyond, "ns-out failed", DEADLINE, failed)
        .await?;
    ensure!(
        wf.batches[1].attempt == 1 && wf.batches[1].records_failed() == 70,
        "{:?}",
        wf.batches[1]
    );
    let findings = diagnose(&env, &beyond).await?;
    let f = finding_of_batch(&findings, 1)?;
    ensure!(
        f["problem"] == "records_not_sent"
            && f["records_failed"] == 70
            && f["message"] == MAPPING_ERROR
            && f["command"] == format!("flowpilot workflow redrive {beyond}"),
        "{f}"
    );
    ensure!(
        f["recommendation"]
            .as_str()
            .is_some_and(|r| r.contains("630 records already written")),
        "{f}"
    );
    // The failed batch's flow is kept: its details and its run's execution record are shown.
    let exec = wf.batches[1]
        .not_sent
        .as_ref()
        .and_then(|n| n.execution_id.clone())
        .context("the run's execution id")?;
    let text = env.cli(&["workflow", "diagnose", beyond.as_str()]).await?;
    ensure!(
        text.contains(&format!("run {exec}: Successful started"))
            && text.contains("70 records not written")
            && text.contains("AppFlow flow: ")
            && !text.contains("cannot"),
        "{text}"
    );
    let ledger = env
        .ledger_check(
            "Beyond",
            "2024-01-01T00:00:00Z".parse()?,
            "2024-01-29T00:00:00Z".parse()?,
        )
        .await?;
    ensure!(
        (ledger.missing(), ledger.duplicates) == (70, 0),
        "before the redrive: {ledger:?}"
    );

    let mut events = Vec::new();
    env.health_until(&mut events, Duration::from_secs(60), |all| {
        count(&health_counts(all), "Records Not Sent") >= 2
            && count(&health_counts(all), "Workflow Failed") >= 1
    })
    .await?;
    // Within the budget the workflow moved on (backfilling, linking or live by the time
    // AppFlow's message came back); beyond it, it failed.
    for (id, failed, budget) in [(&within, false, 100), (&beyond, true, 0)] {
        let mine = about(&events, id);
        let not_sent = of_kind(&mine, "Records Not Sent");
        ensure!(not_sent.len() == 1, "{id}: {not_sent:#?}");
        let d = &not_sent[0]["detail"];
        ensure!(
            d["records_failed"] == 70
                && d["records_processed"] == 700
                && d["error"] == MAPPING_ERROR
                && d["max_record_failures"] == budget
                && d["batch"]["index"] == 1
                && (d["status"] == "failed") == failed
                && d["action"] == "fix_mapping",
            "{id}: {d}"
        );
    }
    let mine = about(&events, &beyond);
    for kind in ["Batch Failed", "Workflow Failed"] {
        let e = of_kind(&mine, kind);
        ensure!(e.len() == 1, "{kind}: {e:#?}");
        let d = &e[0]["detail"];
        ensure!(
            d["action"] == "fix_mapping"
                && d["command"] == format!("flowpilot workflow redrive {beyond}")
                && d["recommendation"]
                    .as_str()
                    .is_some_and(|r| r.contains("duplicate writes")),
            "{kind}: {d}"
        );
    }
    let (ok, report) = crate::schemas::validate(&events).await?;
    ensure!(ok, "emitted events do not match their schemas:\n{report}");
    let metrics = worker.metrics(&env.http).await?;
    ensure!(
        counter(&metrics, "flowpilot_records_failed_total") == 140,
        "{metrics}"
    );

    // The redrive re-runs batch 1's window: the 70 arrive, the 630 are written again.
    env.cli(&["workflow", "redrive", beyond.as_str()]).await?;
    // The redrive command is asynchronous: the failed item still reads `failed` until the
    // worker takes it; a redriven workflow counts the redrive.
    let wf = env
        .wait_for(&beyond, "ns-out live", DEADLINE, |w| {
            w.redrives >= 1 && settled(w)
        })
        .await?;
    ensure_status(&wf, WorkflowStatus::Live)?;
    ensure!(wf.batches[1].records_failed() == 0, "{:?}", wf.batches[1]);
    let ledger = env
        .ledger_check(
            "Beyond",
            "2024-01-01T00:00:00Z".parse()?,
            "2024-01-29T00:00:00Z".parse()?,
        )
        .await?;
    ensure!(
        (ledger.source, ledger.missing(), ledger.duplicates) == (1400, 0, 630),
        "after the redrive: {ledger:?}"
    );
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}

/// Credentials expire after two runs: batch 2 fails on its first attempt (no retry spent),
/// the events and `diagnose` say to reconnect `sf-test`; once the administrator renews them
/// (UpdateConnectorProfile), `workflow redrive` resumes from batch 2 and nothing is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_credentials_fail_at_once_and_a_redrive_after_reconnecting_completes()
-> anyhow::Result<()> {
    let mut plan = short_runs();
    plan.expire_credentials = vec![CredentialExpiry {
        connector_profile: PROFILE.into(),
        after_runs: 2,
        repeat: false,
        message: EXPIRED.into(),
    }];
    let env = Env::start(
        "reconnect",
        SimSetup {
            faults: plan,
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = env.spawn_worker("rc", &[])?;
    let args = WorkflowArgs::new("rc", "2024-02-01", "2024-03-28T00:00:00Z", "P14D");
    let id = env.create_workflow(&args).await?;
    let wf = env.wait_for(&id, "rc failed", DEADLINE, failed).await?;
    let b2 = &wf.batches[2];
    ensure!(
        wf.batches[0].status == flowpilot::core::model::BatchStatus::Succeeded
            && wf.batches[1].status == flowpilot::core::model::BatchStatus::Succeeded
            && b2.status == flowpilot::core::model::BatchStatus::Failed
            && b2.attempt == 1,
        "batch 2 must fail on its first attempt: {:?}",
        wf.batches
    );
    let runs = env.runs().await?;
    ensure!(
        runs_of(&runs, &batch_flow(&id, 2)).len() == 1,
        "one run of batch 2: {runs}"
    );
    ensure!(
        profile_state(&env).await?["credentials"]["state"] == "expired",
        "the simulator's view"
    );

    let findings = diagnose(&env, &id).await?;
    let f = finding_of_batch(&findings, 2)?;
    ensure!(
        f["problem"] == "connector_authentication" && f["message"] == EXPIRED,
        "{f}"
    );
    ensure!(
        f["recommendation"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("reconnect connector profile `{PROFILE}`"))),
        "{f}"
    );
    ensure!(
        f["command"]
            == format!(
                "aws appflow update-connector-profile --connector-profile-name {PROFILE} \
                 --connection-mode Public --connector-profile-config \
                 file://connector-profile.json && flowpilot workflow redrive {id}"
            ),
        "{f}"
    );
    let text = env.cli(&["workflow", "diagnose", id.as_str()]).await?;
    let exec = b2
        .past_execution_ids
        .last()
        .context("batch 2's failed run")?;
    ensure!(
        text.contains("connector_authentication")
            && text.contains("AppFlow does not say whether its credentials expired")
            && text.contains(&format!("run {exec}: Error started"))
            && text.contains(EXPIRED)
            && !text.contains("cannot"),
        "{text}"
    );

    let mut events = Vec::new();
    env.health_until(&mut events, Duration::from_secs(60), |all| {
        count(&health_counts(all), "Workflow Failed") >= 1
    })
    .await?;
    let counts = health_counts(&events);
    ensure!(count(&counts, "Batch Retry Scheduled") == 0, "{counts:?}");
    let mine = about(&events, &id);
    for kind in ["Batch Failed", "Workflow Failed"] {
        let e = of_kind(&mine, kind);
        ensure!(e.len() == 1, "{kind}: {e:#?}");
        let d = &e[0]["detail"];
        ensure!(
            d["action"] == "reconnect"
                && d["connector_profile"] == PROFILE
                && d["error"] == EXPIRED
                && d["transient"] == false
                && d["command"] == format!("flowpilot workflow redrive {id}"),
            "{kind}: {d}"
        );
    }
    let (ok, report) = crate::schemas::validate(&events).await?;
    ensure!(ok, "emitted events do not match their schemas:\n{report}");

    // The administrator reconnects: new credentials through UpdateConnectorProfile.
    reconnect(&env).await?;
    ensure!(
        profile_state(&env).await?["credentials"]["state"] == "valid",
        "renewed"
    );
    env.cli(&["workflow", "redrive", id.as_str()]).await?;
    let wf = env
        .wait_for(&id, "rc live", DEADLINE, |w| w.redrives >= 1 && settled(w))
        .await?;
    ensure_status(&wf, WorkflowStatus::Live)?;
    ensure!(wf.batches[2].attempt == 2, "{:?}", wf.batches[2]);
    env.workflow_ledger(&wf)
        .await?
        .ensure_complete("after reconnecting and redriving")?;
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}

/// UpdateConnectorProfile with new credentials, as the account administrator.
async fn reconnect(env: &Env) -> anyhow::Result<()> {
    use aws_sdk_appflow::types as af;
    let appflow = aws_sdk_appflow::Client::new(&env.sdk_as(ADMIN_PROFILE).await);
    let properties = af::ConnectorProfileProperties::builder()
        .salesforce(
            af::SalesforceConnectorProfileProperties::builder()
                .instance_url("https://example.my.salesforce.com")
                .build(),
        )
        .build();
    let credentials = af::ConnectorProfileCredentials::builder()
        .salesforce(
            af::SalesforceConnectorProfileCredentials::builder()
                .access_token("00D-renewed-access-token")
                .refresh_token("5Aep-renewed-refresh-token")
                .build(),
        )
        .build();
    appflow
        .update_connector_profile()
        .connector_profile_name(PROFILE)
        .connection_mode(af::ConnectionMode::Public)
        .connector_profile_config(
            af::ConnectorProfileConfig::builder()
                .connector_profile_properties(properties)
                .connector_profile_credentials(credentials)
                .build(),
        )
        .send()
        .await
        .context("UpdateConnectorProfile as the administrator")?;
    Ok(())
}

/// The SaaS application allows two calls in any 12 s (a compressed day): batch 2 is refused,
/// the workflow pauses (4 s) instead of spending retries, resumes as calls age out of the
/// window, and goes live with nothing missing and not one retry counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spent_api_allowance_pauses_the_workflow_until_it_returns() -> anyhow::Result<()> {
    const WINDOW_MS: u64 = 12_000;
    let mut plan = short_runs();
    plan.api_budget = vec![ApiBudget {
        connector_profile: PROFILE.into(),
        calls_per_day: 2,
        calls_per_run: 1,
        records_per_call: None,
        window_ms: WINDOW_MS,
        message: flowpilot_sim::faults::DEFAULT_BUDGET_MESSAGE.into(),
    }];
    let env = Env::start(
        "budget",
        SimSetup {
            faults: plan,
            ..SimSetup::default()
        },
    )
    .await?;
    let worker = env.spawn_worker("bud", &[("FLOWPILOT_SOURCE_BUDGET_WAIT", "4s")])?;
    let args = WorkflowArgs::new("bud", "2024-02-01", "2024-03-28T00:00:00Z", "P14D");
    let id = env.create_workflow(&args).await?;

    // While paused, status and diagnose say so (a pause lasts 4 s: look during one of them).
    let mut seen_paused = false;
    for _ in 0..5 {
        env.wait_for(&id, "bud paused", DEADLINE, |w| {
            w.paused_until().is_some() || settled(w)
        })
        .await?;
        let status = json_cli(&env, &["workflow", "status", id.as_str(), "--json"]).await?;
        let findings = diagnose(&env, &id).await?;
        let paused = findings.iter().find(|f| f["problem"] == "source_api_limit");
        if let (Some(until), Some(f)) = (status["paused_until"].as_str(), paused) {
            let until = flowpilot::core::plan::rfc3339(until.parse()?);
            ensure!(
                f["command"] == format!("flowpilot workflow status {id} --watch")
                    && f["message"] == flowpilot_sim::faults::DEFAULT_BUDGET_MESSAGE
                    && f["recommendation"]
                        .as_str()
                        .is_some_and(|r| r.contains(&until)),
                "{f} (paused until {until})"
            );
            seen_paused = true;
            break;
        }
        if env.load(&id).await?.status == WorkflowStatus::Live {
            break;
        }
        // The pause ended between the two reads: wait for the next one, if any.
        poll_until(Duration::from_secs(10), || async {
            Ok(env.load(&id).await?.paused_until().is_none().then_some(()))
        })
        .await?;
    }
    ensure!(seen_paused, "never saw the workflow paused");

    let wf = env.wait_for(&id, "bud live", DEADLINE, settled).await?;
    ensure_status(&wf, WorkflowStatus::Live)?;
    let waits: u32 = wf.batches.iter().map(|b| b.budget_waits).sum();
    ensure!(waits >= 1, "no pause recorded: {:?}", wf.batches);
    let runs = env.runs().await?;
    for b in &wf.batches {
        // One counted attempt per batch: every other start was a pause, not a retry.
        ensure!(
            b.attempt - b.budget_waits == 1 && b.attempt - b.budget_base == 1,
            "batch {} counted retries: {b:?}",
            b.index
        );
        let n = runs_of(&runs, &batch_flow(&id, b.index)).len();
        ensure!(
            n == b.attempt as usize,
            "batch {}: {n} runs for {b:?}",
            b.index
        );
    }
    let budget = &profile_state(&env).await?["api_budget"];
    ensure!(
        budget["refused_runs"] == waits,
        "{budget} vs {waits} pauses"
    );
    env.workflow_ledger(&wf)
        .await?
        .ensure_complete("after the pauses")?;

    let mut events = Vec::new();
    env.health_until(&mut events, Duration::from_secs(60), |all| {
        count(&health_counts(all), "Workflow Completed") >= 1
            && count(&health_counts(all), "Workflow Paused") >= waits as usize
    })
    .await?;
    let counts = health_counts(&events);
    ensure!(
        count(&counts, "Batch Retry Scheduled") == 0 && count(&counts, "Batch Failed") == 0,
        "{counts:?}"
    );
    ensure!(
        count(&counts, "Workflow Paused") == waits as usize,
        "{counts:?}"
    );
    for e in events
        .iter()
        .filter(|e| e["detail-type"] == "Workflow Paused")
    {
        let d = &e["detail"];
        ensure!(
            d["action"] == "wait"
                && d["connector_profile"] == PROFILE
                && d["transient"] == true
                && d["retry_at"].is_string()
                && d["error"] == flowpilot_sim::faults::DEFAULT_BUDGET_MESSAGE,
            "{d}"
        );
    }
    let (ok, report) = crate::schemas::validate(&events).await?;
    ensure!(ok, "emitted events do not match their schemas:\n{report}");
    let metrics = worker.metrics(&env.http).await?;
    ensure!(
        counter(&metrics, "flowpilot_workflow_pauses_total") == u64::from(waits),
        "{metrics}"
    );
    worker.assert_no_panic()?;
    env.shutdown().await;
    Ok(())
}
