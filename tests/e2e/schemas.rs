//! Health events are a compatibility promise (issue 5): every detail type the worker really
//! emits must validate against its JSON Schema in `infra/schemas/`.
//!
//! One workflow is driven through a retry, records not sent, a permanent failure, a redrive, a
//! pause for the SaaS API allowance, a degraded and recovered continuous integration and a
//! rebuild; a second one stalls; a third is stuck while AppFlow answers 500; a fourth splits a
//! window over the simulator's per-run record limit; an unreadable item in the state table is
//! reported by the reconcile passes. Every event the health bus delivered
//! is then validated with the `jsonschema` package of the project's virtualenv (a real JSON
//! Schema 2020-12 validator), and a deliberately broken copy must be rejected.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::chaos::{failing_runs, short_runs};
use crate::support::e2e::{Env, SimSetup, WorkflowArgs};
use anyhow::{Context as _, ensure};
use flowpilot::core::health::HealthKind;
use flowpilot::core::model::WorkflowStatus;
use flowpilot_sim::{DurationRange, FaultPlan};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(120);

/// Validates `events` against the schemas; returns (exit success, validator output).
pub(crate) async fn validate(events: &[Value]) -> anyhow::Result<(bool, String)> {
    let dir = crate::support::scratch_dir().join(format!("schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("events-{}.json", fastrand::u64(..)));
    std::fs::write(&file, serde_json::to_vec(events)?)?;
    let out = tokio::process::Command::new(crate::support::venv_bin("python"))
        .arg("-c")
        .arg(VALIDATOR)
        .arg(crate::support::repo_root().join("infra/schemas"))
        .arg(&file)
        .output()
        .await
        .context("running the virtualenv's python")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

const VALIDATOR: &str = r#"
import json, pathlib, sys
from jsonschema import Draft202012Validator, FormatChecker
schemas = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    s = json.loads(p.read_text())
    Draft202012Validator.check_schema(s)
    schemas[s["properties"]["detail-type"]["const"]] = s
events = json.loads(pathlib.Path(sys.argv[2]).read_text())
invalid = 0
for e in events:
    s = schemas.get(e.get("detail-type"))
    if s is None:
        print("no schema for", e.get("detail-type")); invalid += 1; continue
    errors = list(Draft202012Validator(s, format_checker=FormatChecker()).iter_errors(e))
    for err in errors:
        print(e.get("detail-type"), "/".join(map(str, err.path)), err.message)
    invalid += bool(errors)
print(json.dumps({"schemas": len(schemas), "validated": len(events), "invalid": invalid}))
sys.exit(1 if invalid else 0)
"#;

fn kinds(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["detail-type"].as_str().map(str::to_owned))
        .collect()
}

fn has(kind: HealthKind) -> impl Fn(&[Value]) -> bool {
    move |seen| kinds(seen).contains(kind.detail_type())
}

#[test]
fn there_is_one_schema_per_health_event_type() {
    for kind in HealthKind::ALL {
        let path = crate::support::repo_root()
            .join("infra/schemas")
            .join(format!("{}.json", kind.slug()));
        let schema: Value = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap();
        assert_eq!(
            schema["properties"]["detail-type"]["const"],
            kind.detail_type()
        );
        assert_eq!(schema["properties"]["source"]["const"], "flowpilot");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_emitted_health_event_validates_against_its_schema() -> anyhow::Result<()> {
    let mut plan = short_runs();
    plan.run_failures = vec![
        failing_runs("sch-a-b0000", vec![1], "Rate exceeded"),
        failing_runs(
            "sch-a-b0001",
            vec![1],
            "INVALID_SESSION_ID: Session expired or invalid",
        ),
    ];
    // The retry of batch 0 writes all but a tenth of its records: `Records Not Sent`.
    plan.record_failures = vec![flowpilot_sim::RecordFailure {
        flow_suffix: "sch-a-b0000".into(),
        attempts: vec![2],
        from_attempt: None,
        to_attempt: None,
        fraction: 0.1,
        message: "records rejected by the object type mapping".into(),
    }];
    let env = Env::start(
        "schemas",
        SimSetup {
            // Live flows run every 300 ms, so the continuous integration's health shows quickly.
            tick_ms: 300,
            faults: plan,
            ..SimSetup::default()
        },
    )
    .await?;
    // Reported by every reconcile pass as `Workflow Unreadable`.
    env.put_unreadable_item("sch-unreadable").await?;
    let worker = env.spawn_worker(
        "schemas",
        &[
            ("FLOWPILOT_MAX_RUN", "3s"),
            ("FLOWPILOT_STALL_AFTER", "1s"),
            ("FLOWPILOT_DRAIN_BASE", "200ms"),
            ("FLOWPILOT_DRAIN_CAP", "1s"),
            ("FLOWPILOT_SOURCE_BUDGET_WAIT", "1s"),
        ],
    )?;
    let mut seen = Vec::new();

    // Retry, records not sent within the budget, permanent failure (an expired connection).
    let mut a = WorkflowArgs::new("sch-a", "2024-01-01", "2024-02-12T00:00:00Z", "P14D");
    a.extra = vec![
        "--degraded-threshold".into(),
        "2".into(),
        "--max-record-failures".into(),
        "1000".into(),
    ];
    let a = env.create_workflow(&a).await?;
    env.wait_for(&a, "sch-a failed", DEADLINE, |w| {
        w.status == WorkflowStatus::Failed
    })
    .await?;

    // Redrive to completion, batch 2 pausing once for the SaaS API allowance; the live flow
    // then fails twice (degraded) and recovers.
    let mut plan = short_runs();
    plan.run_failures = vec![
        failing_runs("sch-a-live", vec![1, 2], "Connection reset by peer"),
        failing_runs(
            "sch-a-b0002",
            vec![1],
            "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
        ),
    ];
    env.set_faults(&plan).await?;
    env.cli(&["workflow", "redrive", a.as_str()]).await?;
    env.health_until(&mut seen, DEADLINE, has(HealthKind::IntegrationRecovered))
        .await?;

    // Rebuild on demand.
    env.set_faults(&short_runs()).await?;
    env.cli(&["integration", "rebuild", a.as_str()]).await?;
    env.health_until(&mut seen, DEADLINE, has(HealthKind::IntegrationRebuilt))
        .await?;

    // A run that outlives FLOWPILOT_MAX_RUN: cancelled, retried, `Workflow Stalled`.
    env.set_faults(&FaultPlan {
        run_duration_ms: DurationRange {
            min: 20_000,
            max: 20_000,
        },
        ..FaultPlan::default()
    })
    .await?;
    let b = WorkflowArgs::new("sch-b", "2024-01-01", "2024-01-15T00:00:00Z", "P14D");
    env.create_workflow(&b).await?;
    env.health_until(&mut seen, DEADLINE, has(HealthKind::WorkflowStalled))
        .await?;

    // AppFlow answers 500 to everything for a while: `Workflow Stuck`, then it resumes.
    env.set_faults(&FaultPlan {
        server_error_rate: 1.0,
        ..short_runs()
    })
    .await?;
    let c = WorkflowArgs::new("sch-c", "2024-03-01", "2024-03-15T00:00:00Z", "P14D");
    let c = env.create_workflow(&c).await?;
    env.health_until(&mut seen, DEADLINE, has(HealthKind::WorkflowStuck))
        .await?;
    env.set_faults(&short_runs()).await?;
    env.wait_for(&c, "sch-c live after the outage", DEADLINE, |w| {
        w.status == WorkflowStatus::Live
    })
    .await?;

    // A window over the per-run record limit (100 records, 60 allowed): `Batch Split`.
    env.set_faults(&FaultPlan {
        max_records_per_run: Some(60),
        ..short_runs()
    })
    .await?;
    let d = WorkflowArgs::new("sch-d", "2024-04-01", "2024-04-03T00:00:00Z", "P2D");
    env.create_workflow(&d).await?;
    env.health_until(&mut seen, DEADLINE, has(HealthKind::BatchSplit))
        .await?;

    // The shared run budget at one slot, alerting after a second: the second batch of a
    // two-batch workflow waits for the first one's long run. The worker is replaced by one
    // with the budget on (the fast test settings turn it off).
    drop(worker);
    let _budgeted = env.spawn_worker(
        "schemas-budget",
        &[
            ("FLOWPILOT_PROFILE_RUN_LIMIT", "1"),
            ("FLOWPILOT_SLOT_RETRY", "1s"),
            ("FLOWPILOT_SLOT_WAIT_ALERT", "1s"),
        ],
    )?;
    env.set_faults(&FaultPlan {
        run_duration_ms: DurationRange {
            min: 4_000,
            max: 4_000,
        },
        ..FaultPlan::default()
    })
    .await?;
    let mut e = WorkflowArgs::new("sch-e", "2024-05-01", "2024-05-29T00:00:00Z", "P14D");
    e.concurrency = 2;
    env.create_workflow(&e).await?;
    env.health_until(&mut seen, DEADLINE, has(HealthKind::BatchWaitingForSlot))
        .await?;

    let missing: Vec<&str> = HealthKind::ALL
        .iter()
        .map(|k| k.detail_type())
        .filter(|t| !kinds(&seen).contains(*t))
        .collect();
    ensure!(missing.is_empty(), "never emitted: {missing:?}");

    let (ok, report) = validate(&seen).await?;
    println!(
        "validated {} emitted health events: {}",
        seen.len(),
        report.trim()
    );
    ensure!(ok, "emitted events do not match their schemas:\n{report}");
    ensure!(
        report.contains(&format!("\"validated\": {}", seen.len())),
        "validator did not check every event: {report}"
    );

    // The validator must be able to say no: a copy without `event_id` and with an unknown
    // status is rejected.
    let mut broken = seen[0].clone();
    if let Some(detail) = broken["detail"].as_object_mut() {
        detail.remove("event_id");
        detail.insert("status".into(), Value::from("exploded"));
    }
    let (ok, report) = validate(&[broken]).await?;
    ensure!(!ok, "a broken event passed validation: {report}");
    ensure!(
        report.contains("event_id"),
        "rejection did not name event_id: {report}"
    );
    Ok(())
}
