use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::effect::{EffectError, Outcome, PermanentError, Trigger};
use crate::health::HealthKind;
use crate::ids::{FlowRole, WorkflowId};
use crate::input::RunReport;
use crate::model::BatchStatus;
use crate::spec::SpecInput;
use crate::spec::tests::spec_with;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn wf(edit: impl FnOnce(&mut SpecInput)) -> Workflow {
    Workflow::new(WorkflowId::new("acme").unwrap(), spec_with(edit), t0())
}

/// 4 batches of P6M over 2024-2026, concurrency 2.
fn four(edit: impl FnOnce(&mut SpecInput)) -> Workflow {
    wf(|s| {
        s.batch_size = Some("P6M".into());
        s.concurrency = Some(2);
        edit(s);
    })
}

fn step(w: &Workflow, input: Input, at: DateTime<Utc>) -> Transition {
    let t = decide(w, input, at, &Policy::default());
    if t.is_noop(w) {
        assert_eq!(t.workflow, *w);
        assert!(t.effects.is_empty());
    } else {
        assert_eq!(t.workflow.version, w.version + 1);
    }
    t
}

fn kinds(t: &Transition) -> Vec<String> {
    t.effects
        .iter()
        .map(|e| match &e.kind {
            EffectKind::Publish { event } => format!("publish {}", event.kind.detail_type()),
            other => format!(
                "{} {}",
                serde_json::to_value(other).unwrap()["type"]
                    .as_str()
                    .unwrap(),
                e.key
            ),
        })
        .collect()
}

/// The live flow definition created by generation `g` in this transition.
fn live_create(t: &Transition, g: u32) -> crate::effect::FlowDefinition {
    let key = EffectKey::live(g, crate::effect::LiveStep::Create);
    let e = t.effects.iter().find(|e| e.key == key).unwrap();
    let EffectKind::CreateFlow { flow } = &e.kind else {
        panic!("{key} is not a CreateFlow")
    };
    flow.clone()
}

/// A key by its stored form, as the outbox holds it.
fn key(s: &str) -> EffectKey {
    s.parse().unwrap()
}

fn report(i: u32, exec: &str, ok: bool, error: Option<&str>) -> Input {
    Input::RunEnded(RunReport {
        flow_name: crate::ids::flow_name(&WorkflowId::new("acme").unwrap(), FlowRole::Batch(i)),
        role: FlowRole::Batch(i),
        execution_id: Some(exec.into()),
        succeeded: ok,
        error: error.map(str::to_owned),
        records_processed: Some(10),
        record_failures: Some(0),
        record_failure_message: None,
        pull_start: None,
        pull_end: None,
        ended_at: None,
    })
}

fn started(i: u32, attempt: u32, exec: &str) -> Input {
    Input::Applied(vec![Outcome::Started {
        key: EffectKey::attempt(i, attempt, crate::effect::AttemptStep::Start),
        role: FlowRole::Batch(i),
        attempt,
        execution_id: Some(exec.into()),
    }])
}

fn events(t: &Transition) -> Vec<crate::health::HealthEvent> {
    t.effects
        .iter()
        .filter_map(|e| match &e.kind {
            EffectKind::Publish { event } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn new_workflow_is_pending_with_planned_batches() {
    let w = four(|_| {});
    assert_eq!(
        (w.status, w.version, w.batches.len(), w.bulk),
        (WorkflowStatus::Pending, 0, 4, true)
    );
    assert!(
        w.batches
            .iter()
            .all(|b| b.status == BatchStatus::Pending && b.attempt == 0)
    );
}

#[test]
fn start_creates_and_starts_up_to_concurrency() {
    let w = four(|_| {});
    let t = step(&w, Input::Start, t0());
    assert_eq!(
        kinds(&t),
        [
            "create_flow b0/a1/create",
            "start_flow b0/a1/start",
            "create_flow b1/a1/create",
            "start_flow b1/a1/start",
            "create_flow b2/a1/create",
            "publish Workflow Started"
        ]
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
    let EffectKind::StartFlow { client_token, .. } = &t.effects[1].kind else {
        panic!()
    };
    assert_eq!(client_token, "acme:0:1");
    let EffectKind::CreateFlow { flow } = &t.effects[0].kind else {
        panic!()
    };
    assert_eq!(flow.name, "fp-acme-b0000");
    assert_eq!(flow.trigger, Trigger::OnDemand);
    assert!(flow.tags.contains_key(crate::ids::MANAGED_TAG_KEY));
    assert!(flow.filter.is_some());
    assert_eq!(t.workflow.outbox, t.effects);
    // Start again: nothing.
    assert!(step(&t.workflow, Input::Start, t0()).is_noop(&t.workflow));
}

#[test]
fn success_deletes_the_flow_and_starts_the_next_batch() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let w = step(&w, started(0, 1, "x0"), t0()).workflow;
    let t = step(&w, report(0, "x0", true, None), t0());
    assert_eq!(
        kinds(&t),
        [
            "start_flow b2/a1/start",
            "create_flow b3/a1/create",
            "delete_flow b0/delete",
            "publish Batch Succeeded"
        ]
    );
    let ev = &events(&t)[0].detail;
    assert_eq!(ev.event_id, "acme/batch-succeeded/b0");
    assert_eq!(
        (
            ev.progress.batches_done,
            ev.progress.batches_total,
            ev.progress.records
        ),
        (1, 4, 10)
    );
    // The same report again: no change. Once b1 knows its execution id, a foreign one is ignored.
    assert!(step(&t.workflow, report(0, "x0", true, None), t0()).is_noop(&t.workflow));
    let w = step(&t.workflow, started(1, 1, "x1"), t0()).workflow;
    assert!(step(&w, report(1, "other", false, Some("boom")), t0()).is_noop(&w));
}

#[test]
fn late_report_of_an_old_attempt_does_not_count() {
    let w = step(&four(|s| s.concurrency = Some(1)), Input::Start, t0()).workflow;
    let w = step(&w, started(0, 1, "x1"), t0()).workflow;
    let t = step(&w, report(0, "x1", false, Some("Rate exceeded")), t0());
    let due = t.workflow.batches[0].retry_at.unwrap();
    let w = step(
        &t.workflow,
        Input::RetryDue {
            batch: 0,
            attempt: 1,
            due_at: due,
        },
        due,
    )
    .workflow;
    assert_eq!(
        (w.batches[0].status, w.batches[0].attempt),
        (BatchStatus::Running, 2)
    );
    // attempt 2 has no execution id yet; attempt 1's failure arrives again.
    assert!(step(&w, report(0, "x1", false, Some("Rate exceeded")), due).is_noop(&w));
    // A late Started for attempt 1 does not overwrite attempt 2.
    assert!(step(&w, started(0, 1, "x1"), due).is_noop(&w));
}

#[test]
fn transient_failure_retries_with_backoff_then_fails_when_budget_is_spent() {
    let mut w = step(&four(|s| s.max_retries = Some(1)), Input::Start, t0()).workflow;
    w = step(&w, started(0, 1, "a"), t0()).workflow;
    let t = step(&w, report(0, "a", false, Some("Read timeout")), t0());
    assert_eq!(
        kinds(&t),
        [
            "schedule_retry b0/a1/retry",
            "publish Batch Retry Scheduled"
        ]
    );
    let ev = &events(&t)[0].detail;
    assert_eq!(ev.event_id, "acme/batch-retry-scheduled/b0/a1");
    assert_eq!(
        (ev.transient, ev.error.as_deref()),
        (Some(true), Some("Read timeout"))
    );
    let due = t.workflow.batches[0].retry_at.unwrap();
    assert!(due <= t0() + TimeDelta::seconds(30));
    w = t.workflow;
    // Early and wrong-attempt deliveries are ignored; the right one restarts with a new token.
    assert!(
        step(
            &w,
            Input::RetryDue {
                batch: 0,
                attempt: 1,
                due_at: due
            },
            due - TimeDelta::seconds(1)
        )
        .is_noop(&w)
    );
    assert!(
        step(
            &w,
            Input::RetryDue {
                batch: 0,
                attempt: 7,
                due_at: due
            },
            due
        )
        .is_noop(&w)
    );
    let t = step(
        &w,
        Input::RetryDue {
            batch: 0,
            attempt: 1,
            due_at: due,
        },
        due,
    );
    assert_eq!(
        kinds(&t),
        ["start_flow b0/a2/start", "create_flow b3/a1/create"]
    );
    w = step(&t.workflow, started(0, 2, "b"), due).workflow;
    // Second transient failure: budget (1 + 1 retries) spent → batch and workflow fail.
    let t = step(&w, report(0, "b", false, Some("Read timeout")), due);
    assert_eq!(
        kinds(&t),
        ["publish Batch Failed", "publish Workflow Failed"]
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    let ev = &events(&t)[1].detail;
    assert_eq!(
        ev.command.as_deref(),
        Some("flowpilot workflow redrive acme")
    );
    assert_eq!(ev.event_id, "acme/workflow-failed/r0");
}

#[test]
fn permanent_failure_fails_and_redrive_resumes_only_the_failed_batch() {
    let mut w = step(&four(|_| {}), Input::Start, t0()).workflow;
    w = step(&w, report(0, "a", true, None), t0()).workflow; // b0 done, b2 started
    let t = step(
        &w,
        report(1, "b", false, Some("INVALID_FIELD: No such column")),
        t0(),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    assert_eq!(events(&t)[1].detail.transient, Some(false));
    w = t.workflow;
    // b2 still running finishes successfully, but nothing new starts.
    let t = step(&w, report(2, "c", true, None), t0());
    assert_eq!(
        kinds(&t),
        ["delete_flow b2/delete", "publish Batch Succeeded"]
    );
    w = t.workflow;
    let t = step(&w, Input::Redrive, t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
    assert_eq!(
        kinds(&t),
        ["start_flow b1/a2/start", "start_flow b3/a1/start"]
    );
    assert_eq!(t.workflow.batches[1].budget_base, 1);
    assert!(step(&t.workflow, Input::Redrive, t0()).is_noop(&t.workflow));
}

#[test]
fn all_batches_done_links_from_to_then_live() {
    let mut w = step(&four(|s| s.concurrency = Some(4)), Input::Start, t0()).workflow;
    for i in 0..3 {
        w = step(&w, report(i, &format!("x{i}"), true, None), t0()).workflow;
    }
    let t = step(&w, report(3, "x3", true, None), t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Linking);
    let put = t
        .effects
        .iter()
        .find(|e| e.key == key("live/g1/put"))
        .unwrap();
    let EffectKind::PutIntegration {
        flow_name,
        generation: 1,
        ..
    } = &put.kind
    else {
        panic!()
    };
    assert_eq!(flow_name, "fp-acme-live");
    let flow = live_create(&t, 1);
    let Trigger::Scheduled {
        first_execution_from,
        expression,
        ..
    } = &flow.trigger
    else {
        panic!()
    };
    assert_eq!(
        (*first_execution_from, expression.as_str()),
        (w.spec.to, "rate(1hours)")
    );
    assert_eq!(flow.name, "fp-acme-live");
    let linked = Input::Applied(vec![Outcome::Linked {
        key: key("live/g1/put"),
        generation: 1,
        uri: "arn:flow".into(),
    }]);
    let t = step(&t.workflow, linked.clone(), t0());
    assert_eq!(
        kinds(&t),
        ["start_flow live/g1/start", "publish Workflow Completed"]
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Live);
    // Applied delivered twice: nothing.
    assert!(step(&t.workflow, linked, t0()).is_noop(&t.workflow));
}

#[test]
fn short_range_links_directly_from_from() {
    let w = wf(|s| s.from = Some("2025-12-01".into()));
    let t = step(&w, Input::Start, t0());
    assert_eq!(
        kinds(&t),
        [
            "create_flow live/g1/create",
            "put_integration live/g1/put",
            "publish Workflow Started"
        ]
    );
    let flow = live_create(&t, 1);
    let Trigger::Scheduled {
        first_execution_from,
        ..
    } = flow.trigger
    else {
        panic!()
    };
    assert_eq!(first_execution_from, w.spec.from);
}

#[test]
fn permanent_create_failure_says_what_to_do() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let err = PermanentError {
        code: "ResourceNotFoundException".into(),
        message: "profile sf".into(),
    };
    let t = step(
        &w,
        Input::Applied(vec![Outcome::Failed {
            key: key("b0/a1/create"),
            error: err.clone(),
        }]),
        t0(),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    let msg = &t.workflow.last_error.as_ref().unwrap().message;
    assert!(
        msg.contains("connector profile `sf`") && msg.contains("--connector-profile"),
        "{msg}"
    );
    // The dependent StartFlow failure that follows changes nothing more.
    let again = Input::Applied(vec![Outcome::Failed {
        key: key("b0/a1/start"),
        error: err,
    }]);
    let t2 = step(&t.workflow, again, t0());
    assert_eq!(t2.workflow.status, WorkflowStatus::Failed);
    assert!(t2.effects.is_empty());
}

#[test]
fn permanent_start_failure_fails_without_a_retry() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let err = PermanentError {
        code: "AccessDeniedException".into(),
        message: "not authorized to perform: appflow:StartFlow".into(),
    };
    let t = step(
        &w,
        Input::Applied(vec![
            Outcome::Done {
                key: key("b0/a1/create"),
            },
            Outcome::Failed {
                key: key("b0/a1/start"),
                error: err,
            },
        ]),
        t0(),
    );
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Failed);
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    let msg = &t.workflow.last_error.as_ref().unwrap().message;
    assert!(
        msg.starts_with("StartFlow for batch 0: AccessDeniedException")
            && msg.contains("flowpilot workflow redrive acme"),
        "{msg}"
    );
}

#[test]
fn cancel_cleans_up_and_is_final() {
    let mut w = step(&four(|_| {}), Input::Start, t0()).workflow;
    w = step(&w, started(0, 1, "e0"), t0()).workflow;
    let t = step(&w, Input::Cancel { reason: None }, t0());
    assert_eq!(
        kinds(&t),
        [
            "cancel_run cancel/b0/run",
            "delete_flow cancel/b0/delete",
            "delete_flow cancel/b1/delete",
            "delete_flow cancel/b2/delete"
        ]
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Cancelled);
    for input in [
        Input::Start,
        Input::Redrive,
        Input::Reconcile,
        report(1, "z", true, None),
    ] {
        assert!(step(&t.workflow, input, t0()).is_noop(&t.workflow));
    }
}

fn live_wf(edit: impl FnOnce(&mut SpecInput)) -> Workflow {
    let w = wf(|s| {
        s.from = Some("2025-12-01".into());
        edit(s);
    });
    let w = step(&w, Input::Start, t0()).workflow;
    let linked = Input::Applied(vec![Outcome::Linked {
        key: key("live/g1/put"),
        generation: 1,
        uri: "arn:1".into(),
    }]);
    step(&w, linked, t0()).workflow
}

fn live_run(exec: &str, ok: bool, pull_end: Option<&str>) -> Input {
    live_run_of("fp-acme-live", exec, ok, pull_end)
}

/// An End report of live flow `flow`.
fn live_run_of(flow: &str, exec: &str, ok: bool, pull_end: Option<&str>) -> Input {
    Input::RunEnded(RunReport {
        flow_name: flow.into(),
        role: FlowRole::Live,
        execution_id: Some(exec.into()),
        succeeded: ok,
        error: (!ok).then(|| "Connection reset".into()),
        records_processed: Some(5),
        record_failures: None,
        record_failure_message: None,
        pull_start: None,
        pull_end: pull_end.map(|p| DateTime::parse_from_rfc3339(p).unwrap().with_timezone(&Utc)),
        ended_at: None,
    })
}

#[test]
fn live_degrades_recovers_and_rebuilds_from_the_last_good_pull() {
    let mut w = live_wf(|_| {});
    w = step(&w, live_run("r1", true, Some("2026-01-01T01:00:00Z")), t0()).workflow;
    w = step(&w, live_run("r2", false, None), t0()).workflow;
    w = step(&w, live_run("r2", false, None), t0()).workflow; // duplicate: not counted
    w = step(&w, live_run("r3", false, None), t0()).workflow;
    assert_eq!(w.status, WorkflowStatus::Live);
    let t = step(&w, live_run("r4", false, None), t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Degraded);
    let ev = &events(&t)[0].detail;
    assert_eq!(ev.event_id, "acme/integration-degraded/g1/s1");
    assert_eq!(
        ev.command.as_deref(),
        Some("flowpilot integration rebuild acme")
    );
    let t = step(
        &t.workflow,
        live_run("r5", true, Some("2026-01-01T05:00:00Z")),
        t0(),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Live);
    assert_eq!(
        events(&t)[0].detail.event_id,
        "acme/integration-recovered/g1/s2"
    );
    let t = step(&t.workflow, Input::Rebuild { reason: None }, t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Rebuilding);
    // The linked generation 1 retires first: its schedule stops, AppFlow is asked about runs.
    assert_eq!(
        kinds(&t),
        [
            "stop_flow live/g2/stop",
            &format!("describe_runs live/g2/runs/{}", t0().timestamp_millis())
        ]
    );
    // Nothing in progress: the old integration and flow go, generation 2 is created.
    let t = step(&t.workflow, no_runs(&t), t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Rebuilding);
    assert_eq!(
        kinds(&t),
        [
            "delete_integration live/g2/delete-integration",
            "delete_flow live/g2/delete-flow",
            "create_flow live/g2/create",
            "put_integration live/g2/put"
        ]
    );
    let EffectKind::DeleteFlow { flow_name } = &t.effects[1].kind else {
        panic!("{:?}", t.effects[1])
    };
    assert_eq!(flow_name, "fp-acme-live");
    let flow = live_create(&t, 2);
    assert_eq!(flow.name, "fp-acme-live-g2");
    let Trigger::Scheduled {
        first_execution_from,
        ..
    } = flow.trigger
    else {
        panic!()
    };
    assert_eq!(
        first_execution_from.to_rfc3339(),
        "2026-01-01T05:00:00+00:00"
    );
    // Old-generation runs during the rebuild are ignored.
    assert!(step(&t.workflow, live_run("r6", false, None), t0()).is_noop(&t.workflow));
    let linked = Input::Applied(vec![Outcome::Linked {
        key: key("live/g2/put"),
        generation: 2,
        uri: "arn:2".into(),
    }]);
    let t = step(&t.workflow, linked, t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Live);
    assert_eq!(events(&t)[0].kind, HealthKind::IntegrationRebuilt);
}

/// The key of the DescribeRuns effect `t` asked for.
fn runs_key(t: &Transition) -> EffectKey {
    t.effects
        .iter()
        .find(|e| matches!(e.kind, EffectKind::DescribeRuns { .. }))
        .map(|e| e.key.clone())
        .unwrap_or_else(|| panic!("no describe_runs in {:?}", kinds(t)))
}

/// AppFlow's answer to the DescribeRuns of `t`: no run, none in progress.
fn no_runs(t: &Transition) -> Input {
    Input::Applied(vec![Outcome::Runs {
        key: runs_key(t),
        runs: crate::input::FlowRuns::default(),
    }])
}

#[test]
fn deactivation_with_auto_rebuild_starts_a_rebuild() {
    let w = live_wf(|s| s.auto_rebuild = Some(true));
    let t = step(
        &w,
        Input::FlowDeactivated {
            role: FlowRole::Live,
            flow_name: "fp-acme-live".into(),
            reason: "errors".into(),
        },
        t0(),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Rebuilding);
    assert_eq!(t.workflow.live.as_ref().unwrap().generation, 2);
    assert_eq!(events(&t)[0].kind, HealthKind::IntegrationDegraded);
}

#[test]
fn reconcile_describes_then_gives_up_on_stalled_runs() {
    let mut w = step(&four(|s| s.concurrency = Some(1)), Input::Start, t0()).workflow;
    w = step(&w, started(0, 1, "e"), t0()).workflow;
    assert!(step(&w, Input::Reconcile, t0() + TimeDelta::minutes(5)).is_noop(&w));
    let at = t0() + TimeDelta::minutes(11);
    let t = step(&w, Input::Reconcile, at);
    assert_eq!(t.effects.len(), 1);
    assert!(matches!(t.effects[0].kind, EffectKind::DescribeRun { .. }));
    // Already asking: a second tick does not ask again.
    assert!(step(&t.workflow, Input::Reconcile, at + TimeDelta::minutes(1)).is_noop(&t.workflow));
    // A finished run found by DescribeRun counts like the event.
    let described = Input::Applied(vec![Outcome::Described {
        key: t.effects[0].key.clone(),
        role: FlowRole::Batch(0),
        attempt: 1,
        run: match report(0, "e", true, None) {
            Input::RunEnded(r) => Some(r),
            _ => None,
        },
    }]);
    let t2 = step(&t.workflow, described, at);
    assert_eq!(t2.workflow.batches[0].status, BatchStatus::Succeeded);
    // Stalled: past max_run_duration → cancel, retry, Workflow Stalled.
    let t3 = step(&w, Input::Reconcile, t0() + TimeDelta::hours(7));
    assert_eq!(
        kinds(&t3),
        [
            "cancel_run b0/a1/cancel",
            "schedule_retry b0/a1/retry",
            "publish Workflow Stalled",
            "publish Batch Retry Scheduled"
        ]
    );
}

#[test]
fn reconcile_restarts_lost_retries() {
    let mut w = step(&four(|s| s.concurrency = Some(1)), Input::Start, t0()).workflow;
    w = step(&w, report(0, "e", false, Some("503")), t0()).workflow;
    let due = w.batches[0].retry_at.unwrap();
    assert!(step(&w, Input::Reconcile, due + TimeDelta::minutes(4)).is_noop(&w));
    let t = step(&w, Input::Reconcile, due + TimeDelta::minutes(6));
    assert_eq!(t.workflow.batches[0].attempt, 2);
}

#[test]
fn permanent_link_failure_fails_and_redrive_relinks_with_a_new_generation() {
    let w = wf(|s| s.from = Some("2025-12-01".into()));
    let w = step(&w, Input::Start, t0()).workflow;
    let err = PermanentError {
        code: "AccessDeniedException".into(),
        message: "no".into(),
    };
    let t = step(
        &w,
        Input::Applied(vec![Outcome::Failed {
            key: key("live/g1/put"),
            error: err,
        }]),
        t0(),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    let t = step(&t.workflow, Input::Redrive, t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Linking);
    assert_eq!(
        kinds(&t),
        [
            "delete_flow live/g2/delete-flow",
            "create_flow live/g2/create",
            "put_integration live/g2/put"
        ]
    );
}

#[test]
fn permanent_live_create_failure_fails_the_workflow_naming_the_flow() {
    let w = wf(|s| s.from = Some("2025-12-01".into()));
    let w = step(&w, Input::Start, t0()).workflow;
    let err = PermanentError {
        code: "AccessDeniedException".into(),
        message: "not authorized to perform: appflow:CreateFlow".into(),
    };
    let t = step(
        &w,
        Input::Applied(vec![Outcome::Failed {
            key: key("live/g1/create"),
            error: err,
        }]),
        t0(),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    let msg = &t.workflow.last_error.as_ref().unwrap().message;
    assert!(
        msg.contains("fp-acme-live") && msg.contains("appflow:CreateFlow"),
        "{msg}"
    );
}

#[test]
fn a_link_waiting_in_the_outbox_is_left_to_the_drain() {
    // A transient PutIntegration failure leaves `live/g1/put` in the outbox (effect::outcome_of):
    // reconcile must not start another generation beside it.
    let w = wf(|s| s.from = Some("2025-12-01".into()));
    let w = step(&w, Input::Start, t0()).workflow;
    let w = step(
        &w,
        Input::Applied(vec![Outcome::Done {
            key: key("live/g1/create"),
        }]),
        t0(),
    )
    .workflow;
    assert_eq!(w.status, WorkflowStatus::Linking);
    assert!(step(&w, Input::Reconcile, t0() + TimeDelta::hours(1)).is_noop(&w));
}

#[test]
fn reconcile_starts_a_workflow_whose_start_command_was_lost() {
    let w = four(|_| {});
    let grace = TimeDelta::from_std(Policy::default().retry_grace).unwrap();
    // Within the grace the start command may still be on its way: leave it alone.
    let early = step(&w, Input::Reconcile, t0() + grace);
    assert!(early.is_noop(&w));
    let t = step(&w, Input::Reconcile, t0() + grace + TimeDelta::seconds(1));
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
    assert!(kinds(&t).contains(&"publish Workflow Started".to_string()));
    // The late start command is then a duplicate.
    let late = step(
        &t.workflow,
        Input::Start,
        t0() + grace + TimeDelta::seconds(2),
    );
    assert!(late.is_noop(&t.workflow));
}

#[test]
fn a_legacy_unbounded_retry_policy_retries_within_a_day() {
    // Validation once accepted any retry delay; such specs are still stored.
    let mut w = four(|_| {});
    w.spec.retry = crate::spec::RetryPolicy {
        max_retries: u32::MAX,
        base_ms: u64::MAX,
        cap_ms: u64::MAX,
    };
    let w = step(&w, Input::Start, t0()).workflow;
    let t = step(&w, report(0, "a", false, Some("Rate exceeded")), t0());
    let b = &t.workflow.batches[0];
    assert_eq!(b.status, BatchStatus::RetryWait);
    assert!(b.retry_at.unwrap() <= t0() + TimeDelta::hours(24), "{b:?}");
}

#[test]
fn a_retry_due_past_the_end_of_time_saturates_instead_of_panicking() {
    let now = DateTime::<Utc>::MAX_UTC - TimeDelta::milliseconds(1);
    let w = Workflow::new(WorkflowId::new("acme").unwrap(), spec_with(|_| {}), now);
    let w = step(&w, Input::Start, now).workflow;
    let t = step(&w, report(0, "a", false, Some("Rate exceeded")), now);
    let b = &t.workflow.batches[0];
    assert_eq!(b.status, BatchStatus::RetryWait);
    assert_eq!(b.retry_at, Some(DateTime::<Utc>::MAX_UTC));
}

#[test]
fn absurd_record_counts_saturate() {
    let w = step(&four(|s| s.concurrency = Some(4)), Input::Start, t0()).workflow;
    let huge = |i: u32| match report(i, &format!("x{i}"), true, None) {
        Input::RunEnded(mut r) => {
            r.records_processed = Some(u64::MAX);
            Input::RunEnded(r)
        }
        other => other,
    };
    let w = step(&w, huge(0), t0()).workflow;
    let t = step(&w, huge(1), t0());
    assert_eq!(events(&t)[0].detail.progress.records, u64::MAX);
}

/// Batches are numbered from 0 wherever a batch number is read: the flow name `-b0002`, the
/// flow's description, the health event's `batch.index` and id.
#[test]
fn batch_numbers_are_the_flow_names_numbers() {
    let t = step(&four(|s| s.concurrency = Some(4)), Input::Start, t0());
    let create_b2 = EffectKey::attempt(2, 1, crate::effect::AttemptStep::Create);
    let Some(EffectKind::CreateFlow { flow }) = t
        .effects
        .iter()
        .find(|e| e.key == create_b2)
        .map(|e| &e.kind)
    else {
        panic!("no {create_b2}")
    };
    assert_eq!(flow.name, "fp-acme-b0002");
    assert!(
        flow.description
            .starts_with("flowpilot workflow acme batch 2 of batches 0 to 3, window "),
        "{}",
        flow.description
    );
    // An end report as AppFlow sends it, for flow -b0002.
    let body = serde_json::json!({
        "source": "aws.appflow",
        "detail-type": "AppFlow End Flow Run Report",
        "detail": {"flow-name": "fp-acme-b0002", "status": "Execution Failed",
                   "error": "Rate exceeded", "execution-id": "x2"},
    });
    let Ok(crate::event::Message::Workflow { input, .. }) =
        crate::event::parse_message(&body.to_string())
    else {
        panic!("not a workflow message")
    };
    let t = step(&t.workflow, input, t0());
    let ev = &events(&t)[0].detail;
    assert_eq!(ev.flow_name.as_deref(), Some("fp-acme-b0002"));
    assert_eq!(ev.batch.as_ref().map(|b| b.index), Some(2));
    assert_eq!(ev.event_id, "acme/batch-retry-scheduled/b2/a1");
}

fn transient(code: &str) -> EffectError {
    EffectError {
        code: code.into(),
        message: "AppFlow is having a bad day".into(),
        permanent: false,
    }
}

#[test]
fn a_stuck_outbox_schedules_one_drain_and_reports_one_stall() {
    let policy = Policy::default();
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let stuck = Input::Stuck {
        key: key("b0/a1/create"),
        error: transient("InternalServerException"),
    };
    let t = step(&w, stuck.clone(), t0());
    let d = t.workflow.drain.clone().unwrap();
    assert_eq!((d.attempts, d.since), (1, t0()));
    assert_eq!(d.due_at, Some(t0() + TimeDelta::seconds(10)));
    // Found stuck again (a reconcile pass, another event) while the drain is pending:
    // nothing new is scheduled, only the error refreshed.
    let again = step(&t.workflow, stuck.clone(), t0() + TimeDelta::seconds(5));
    assert_eq!(again.workflow.drain.as_ref().unwrap().attempts, 1);
    assert!(again.effects.is_empty());
    // The drain arrives and it still fails: the next one, twice as late.
    let w = step(
        &again.workflow,
        Input::Drain { attempt: 1 },
        t0() + TimeDelta::seconds(10),
    )
    .workflow;
    let w = step(&w, stuck.clone(), t0() + TimeDelta::seconds(10)).workflow;
    let d = w.drain.clone().unwrap();
    assert_eq!(
        (d.attempts, d.due_at),
        (2, Some(t0() + TimeDelta::seconds(30)))
    );
    // A stale drain message (attempt 1) does not consume the pending one.
    let stale = step(
        &w,
        Input::Drain { attempt: 1 },
        t0() + TimeDelta::seconds(11),
    );
    assert!(stale.is_noop(&w));
    // Stuck past FLOWPILOT_STALL_AFTER: one Workflow Stuck, naming the flow and the effect.
    let late = t0() + TimeDelta::from_std(policy.stall_after).unwrap();
    let t = step(&w, stuck.clone(), late);
    let ev = events(&t);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, HealthKind::WorkflowStuck);
    let detail = &ev[0].detail;
    assert_eq!(detail.flow_name.as_deref(), Some("fp-acme-b0000"));
    assert!(
        detail.error.as_deref().unwrap().contains("b0/a1/create"),
        "{detail:?}"
    );
    let t2 = step(&t.workflow, stuck, late + TimeDelta::minutes(10));
    assert!(
        events(&t2).is_empty(),
        "a stall is reported once per stuck period"
    );
    // The stuck effect finally runs: the stuck period is over.
    let done = step(
        &t2.workflow,
        Input::Applied(vec![Outcome::Done {
            key: key("b0/a1/create"),
        }]),
        late + TimeDelta::minutes(11),
    );
    assert_eq!(done.workflow.drain, None);
}

#[test]
fn a_lost_drain_is_scheduled_again_once_overdue() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let stuck = Input::Stuck {
        key: key("b0/a1/create"),
        error: transient("ThrottlingException"),
    };
    let w = step(&w, stuck.clone(), t0()).workflow;
    let grace = TimeDelta::from_std(Policy::default().retry_grace).unwrap();
    // Due at +10 s; still within the grace: not lost yet.
    let within = t0() + TimeDelta::seconds(10) + grace;
    assert_eq!(
        step(&w, stuck.clone(), within)
            .workflow
            .drain
            .unwrap()
            .attempts,
        1
    );
    let lost = within + TimeDelta::seconds(1);
    assert_eq!(step(&w, stuck, lost).workflow.drain.unwrap().attempts, 2);
}

#[test]
fn a_report_about_an_effect_no_longer_pending_changes_nothing() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let t = step(
        &w,
        Input::Stuck {
            key: key("b3/a9/create"),
            error: transient("InternalServerException"),
        },
        t0(),
    );
    assert!(t.is_noop(&w));
}

/// Live generations: retiring the previous flow on a rebuild, and telling generations apart.
mod generations;
mod records;
mod resize;
mod slot;
mod split;
mod verdicts;
