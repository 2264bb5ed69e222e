//! Record-level failures (`decide::records`): never silent, within `max_record_failures` a
//! marked success, beyond it a failure with a redrive command; AppFlow's message asked for
//! before the batch's flow is deleted.

use super::*;
use crate::effect::AttemptStep;

/// A successful End report of batch `i` with `failed` record failures out of 50.
fn with_failures(i: u32, exec: &str, failed: u64, message: Option<&str>) -> Input {
    Input::RunEnded(RunReport {
        flow_name: crate::ids::flow_name(&WorkflowId::new("acme").unwrap(), FlowRole::Batch(i)),
        role: FlowRole::Batch(i),
        execution_id: Some(exec.into()),
        succeeded: true,
        error: None,
        records_processed: Some(50),
        record_failures: Some(failed),
        record_failure_message: message.map(str::to_owned),
        pull_start: None,
        pull_end: None,
        ended_at: None,
    })
}

/// A four-batch workflow (concurrency 2) whose batch 0 runs as `x0`.
fn running(max_record_failures: u32) -> Workflow {
    let w = step(
        &four(|s| s.max_record_failures = Some(max_record_failures)),
        Input::Start,
        t0(),
    )
    .workflow;
    step(&w, started(0, 1, "x0"), t0()).workflow
}

fn details(i: u32, attempt: u32, message: Option<&str>) -> Input {
    let run = message.map(|m| RunReport {
        flow_name: format!("fp-acme-b{i:04}"),
        role: FlowRole::Batch(i),
        execution_id: Some("x0".into()),
        succeeded: true,
        error: None,
        records_processed: Some(50),
        record_failures: Some(5),
        record_failure_message: Some(m.into()),
        pull_start: None,
        pull_end: None,
        ended_at: None,
    });
    Input::Applied(vec![Outcome::Described {
        key: EffectKey::attempt(i, attempt, AttemptStep::Details),
        role: FlowRole::Batch(i),
        attempt,
        run,
    }])
}

fn only(events: &[crate::health::HealthEvent], kind: HealthKind) -> crate::health::HealthEvent {
    let found: Vec<_> = events.iter().filter(|e| e.kind == kind).collect();
    assert_eq!(found.len(), 1, "{kind:?} in {events:#?}");
    found[0].clone()
}

#[test]
fn failures_within_budget_succeed_marked_and_are_reported_with_appflow_message() {
    let w = running(5);
    let t = step(
        &w,
        with_failures(0, "x0", 5, Some("5 records failed: mapping")),
        t0(),
    );
    let b = &t.workflow.batches[0];
    assert_eq!(b.status, BatchStatus::Succeeded);
    assert_eq!(b.records_failed(), 5);
    let ns = b.not_sent.as_ref().unwrap();
    assert_eq!(
        (ns.records_processed, ns.message.as_deref(), ns.reported),
        (50, Some("5 records failed: mapping"), true)
    );
    let e = only(&events(&t), HealthKind::RecordsNotSent);
    let d = &e.detail;
    assert_eq!(d.event_id, "acme/records-not-sent/b0/a1");
    assert_eq!(
        (d.records_failed, d.records_processed, d.max_record_failures),
        (Some(5), Some(50), Some(5))
    );
    assert_eq!(d.error.as_deref(), Some("5 records failed: mapping"));
    assert_eq!(d.action.as_deref(), Some("fix_mapping"));
    assert_eq!(d.flow_name.as_deref(), Some("fp-acme-b0000"));
    assert_eq!(d.batch.as_ref().map(|b| b.index), Some(0));
    assert!(
        d.command
            .as_deref()
            .unwrap()
            .starts_with("aws customer-profiles get-profile-object-type"),
        "{d:?}"
    );
    // The next batch starts as after any success; no describe is needed.
    assert!(kinds(&t).contains(&"start_flow b2/a1/start".to_owned()));
    assert!(!kinds(&t).iter().any(|k| k.contains("details")));
}

#[test]
fn appflow_message_is_asked_for_before_the_flow_is_deleted() {
    let w = running(10);
    let t = step(&w, with_failures(0, "x0", 5, None), t0());
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Succeeded);
    let k = kinds(&t);
    let describe = k
        .iter()
        .position(|k| k == "describe_run b0/a1/details")
        .unwrap();
    let delete = k.iter().position(|k| k == "delete_flow b0/delete").unwrap();
    let start = k
        .iter()
        .position(|k| k == "start_flow b2/a1/start")
        .unwrap();
    assert!(start < describe && describe < delete, "{k:?}");
    // No event yet: it waits for AppFlow's message.
    assert!(
        !events(&t)
            .iter()
            .any(|e| e.kind == HealthKind::RecordsNotSent)
    );
    let EffectKind::DescribeRun { execution_id, .. } = &t
        .effects
        .iter()
        .find(|e| e.key == key("b0/a1/details"))
        .unwrap()
        .kind
    else {
        panic!()
    };
    assert_eq!(execution_id.as_deref(), Some("x0"));

    let t2 = step(&t.workflow, details(0, 1, Some("Invalid field Foo")), t0());
    let e = only(&events(&t2), HealthKind::RecordsNotSent);
    assert_eq!(e.detail.error.as_deref(), Some("Invalid field Foo"));
    assert_eq!(
        t2.workflow.batches[0]
            .not_sent
            .as_ref()
            .unwrap()
            .message
            .as_deref(),
        Some("Invalid field Foo")
    );
    // A second answer (a redelivered outcome) reports nothing more.
    let mut again = t2.workflow.clone();
    again.outbox.push(
        t.effects
            .iter()
            .find(|e| e.key == key("b0/a1/details"))
            .unwrap()
            .clone(),
    );
    let t3 = step(&again, details(0, 1, Some("other")), t0());
    assert!(events(&t3).is_empty());
}

#[test]
fn without_appflow_message_the_failures_are_still_reported() {
    let w = running(10);
    let t = step(&w, with_failures(0, "x0", 5, None), t0());
    // DescribeRun failed for good: report without the message.
    let t2 = step(
        &t.workflow,
        Input::Applied(vec![Outcome::Failed {
            key: key("b0/a1/details"),
            error: PermanentError {
                code: "ResourceNotFoundException".into(),
                message: "gone".into(),
            },
        }]),
        t0(),
    );
    let e = only(&events(&t2), HealthKind::RecordsNotSent);
    assert!(
        e.detail
            .error
            .as_deref()
            .unwrap()
            .contains("AppFlow gave no message"),
        "{e:?}"
    );
    assert_eq!(e.detail.records_failed, Some(5));
}

#[test]
fn failures_beyond_budget_fail_the_batch_with_a_redrive_that_says_what_it_rewrites() {
    let w = running(0);
    let t = step(
        &w,
        with_failures(0, "x0", 5, Some("5 records failed: mapping")),
        t0(),
    );
    let b = &t.workflow.batches[0];
    assert_eq!(b.status, BatchStatus::Failed);
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    assert_eq!(b.records_failed(), 5);
    // No retry: a re-run would rewrite the 45 written records and most likely fail the same 5.
    assert!(!kinds(&t).iter().any(|k| k.contains("retry")));
    let evs = events(&t);
    let failed = only(&evs, HealthKind::BatchFailed);
    let wf_failed = only(&evs, HealthKind::WorkflowFailed);
    let not_sent = only(&evs, HealthKind::RecordsNotSent);
    for e in [&failed, &wf_failed, &not_sent] {
        assert_eq!(e.detail.action.as_deref(), Some("fix_mapping"), "{e:?}");
        assert_eq!(
            e.detail.command.as_deref(),
            Some("flowpilot workflow redrive acme")
        );
        let r = e.detail.recommendation.as_deref().unwrap();
        assert!(
            r.contains("45 records already written") && r.contains("duplicate writes"),
            "{r}"
        );
    }
    let err = t.workflow.last_error.as_ref().unwrap();
    assert!(
        err.message.contains("5 of 50 records")
            && err.message.contains("--max-record-failures 0")
            && err.message.contains("5 records failed: mapping"),
        "{err:?}"
    );
    assert!(!err.transient);

    // Redrive re-runs the window; a clean run clears what was not sent.
    let t = step(&t.workflow, Input::Redrive, t0());
    assert!(kinds(&t).contains(&"start_flow b0/a2/start".to_owned()));
    let w = step(&t.workflow, started(0, 2, "x0b"), t0()).workflow;
    let t = step(&w, with_failures(0, "x0b", 0, None), t0());
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Succeeded);
    assert_eq!(t.workflow.batches[0].not_sent, None);
}

#[test]
fn a_failed_batch_gets_appflow_message_when_it_arrives() {
    let w = running(1);
    let t = step(&w, with_failures(0, "x0", 5, None), t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    assert!(kinds(&t).contains(&"describe_run b0/a1/details".to_owned()));
    let t2 = step(&t.workflow, details(0, 1, Some("Invalid field Foo")), t0());
    let w2 = &t2.workflow;
    for err in [w2.last_error.as_ref(), w2.batches[0].last_error.as_ref()] {
        assert!(
            err.unwrap().message.ends_with(": Invalid field Foo"),
            "{err:?}"
        );
    }
    let e = only(&events(&t2), HealthKind::RecordsNotSent);
    assert_eq!(e.detail.status, "failed");
    assert_eq!(e.detail.action.as_deref(), Some("fix_mapping"));
}

#[test]
fn a_run_read_from_the_execution_record_carries_its_message() {
    // Reconcile found the run (its End report lost): the record has count and message.
    let w = running(10);
    let w = step(&w, Input::Reconcile, t0() + TimeDelta::minutes(11)).workflow;
    let describe = w
        .outbox
        .iter()
        .find(|e| {
            matches!(
                e.key,
                EffectKey::Attempt {
                    step: AttemptStep::Describe { .. },
                    ..
                }
            )
        })
        .unwrap()
        .key
        .clone();
    let Input::RunEnded(run) = with_failures(0, "x0", 3, Some("3 failed")) else {
        panic!()
    };
    let t = step(
        &w,
        Input::Applied(vec![Outcome::Described {
            key: describe,
            role: FlowRole::Batch(0),
            attempt: 1,
            run: Some(run),
        }]),
        t0() + TimeDelta::minutes(11),
    );
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Succeeded);
    let e = only(&events(&t), HealthKind::RecordsNotSent);
    assert_eq!(e.detail.error.as_deref(), Some("3 failed"));
}

fn live_with_failures(exec: &str, failed: u64, message: Option<&str>) -> Input {
    let Input::RunEnded(mut r) = live_run(exec, true, Some("2026-01-01T01:00:00Z")) else {
        panic!()
    };
    r.record_failures = Some(failed);
    r.record_failure_message = message.map(str::to_owned);
    Input::RunEnded(r)
}

#[test]
fn live_record_failures_are_counted_once_and_reported_with_appflow_message() {
    let w = live_wf(|_| {});
    let t = step(&w, live_with_failures("r1", 4, None), t0());
    let live = t.workflow.live.as_ref().unwrap();
    assert_eq!(live.records_failed, 4);
    assert_eq!(live.runs_succeeded, 1);
    assert_eq!(kinds(&t), ["describe_run live/g1/details/1"]);
    // The duplicate report counts nothing more.
    let dup = step(&t.workflow, live_with_failures("r1", 4, None), t0());
    assert!(dup.is_noop(&t.workflow));

    let EffectKind::DescribeRun {
        execution_id, role, ..
    } = &t.effects[0].kind
    else {
        panic!()
    };
    assert_eq!(
        (execution_id.as_deref(), *role),
        (Some("r1"), FlowRole::Live)
    );
    let Input::RunEnded(mut rec) = live_with_failures("r1", 4, Some("4 failed: bad email")) else {
        panic!()
    };
    rec.record_failure_message = Some("4 failed: bad email".into());
    let t2 = step(
        &t.workflow,
        Input::Applied(vec![Outcome::Described {
            key: key("live/g1/details/1"),
            role: FlowRole::Live,
            attempt: 1,
            run: Some(rec),
        }]),
        t0(),
    );
    let e = only(&events(&t2), HealthKind::RecordsNotSent);
    assert_eq!(e.detail.event_id, "acme/records-not-sent/g1/s1");
    assert_eq!(e.detail.flow_name.as_deref(), Some("fp-acme-live"));
    assert_eq!(e.detail.batch, None);
    assert_eq!(e.detail.error.as_deref(), Some("4 failed: bad email"));
    assert_eq!(e.detail.action.as_deref(), Some("fix_mapping"));
    // The integration stays live: a live run cannot be re-run.
    assert_eq!(t2.workflow.status, WorkflowStatus::Live);

    // A run whose report carries the message is reported at once.
    let t3 = step(
        &t2.workflow,
        live_with_failures("r2", 1, Some("1 failed")),
        t0(),
    );
    assert_eq!(t3.workflow.live.as_ref().unwrap().records_failed, 5);
    let e = only(&events(&t3), HealthKind::RecordsNotSent);
    assert_eq!(e.detail.event_id, "acme/records-not-sent/g1/s2");
}

#[test]
fn the_live_runs_remembered_are_bounded() {
    let mut w = live_wf(|_| {});
    for n in 0..20 {
        w = step(&w, live_with_failures(&format!("r{n}"), 1, Some("x")), t0()).workflow;
    }
    let live = w.live.as_ref().unwrap();
    assert_eq!(live.records_failed, 20);
    assert_eq!(live.not_sent.len(), 8);
    assert_eq!(live.not_sent[7].execution_id.as_deref(), Some("r19"));
}
