//! The error table's two newer verdicts, decided: reconnect fails the batch on the first
//! attempt and says which connector profile to reconnect; a spent SaaS API allowance pauses the
//! workflow's starts without counting the refused attempt (`decide::pause`).

use super::*;
use crate::effect::AttemptStep;

const EXPIRED: &str = "INVALID_SESSION_ID: Session expired or invalid";
const LIMIT: &str = "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.";

fn only(t: &Transition, kind: HealthKind) -> crate::health::HealthEvent {
    let found: Vec<_> = events(t).into_iter().filter(|e| e.kind == kind).collect();
    assert_eq!(found.len(), 1, "{kind:?} in {:?}", kinds(t));
    found[0].clone()
}

fn started_wf(edit: impl FnOnce(&mut SpecInput)) -> Workflow {
    let w = step(&four(edit), Input::Start, t0()).workflow;
    let w = step(&w, started(0, 1, "x0"), t0()).workflow;
    step(&w, started(1, 1, "x1"), t0()).workflow
}

#[test]
fn an_expired_connection_fails_the_batch_at_once_naming_the_profile() {
    let w = started_wf(|s| s.max_retries = Some(3));
    let t = step(&w, report(0, "x0", false, Some(EXPIRED)), t0());
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Failed);
    assert_eq!(t.workflow.batches[0].attempt, 1, "no retry was started");
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    assert!(!kinds(&t).iter().any(|k| k.contains("retry")));
    for kind in [HealthKind::BatchFailed, HealthKind::WorkflowFailed] {
        let d = only(&t, kind).detail;
        assert_eq!(d.action.as_deref(), Some("reconnect"), "{kind:?}");
        assert_eq!(d.connector_profile.as_deref(), Some("sf"));
        assert!(
            d.recommendation
                .as_deref()
                .unwrap()
                .contains("reconnect connector profile `sf`"),
            "{d:?}"
        );
        assert_eq!(
            d.command.as_deref(),
            Some("flowpilot workflow redrive acme")
        );
        assert_eq!(d.transient, Some(false));
    }
    assert_eq!(
        t.workflow.last_error.as_ref().unwrap().verdict(),
        crate::classify::Verdict::Reconnect
    );
    // Once reconnected, redrive resumes from the failed batch.
    let t = step(&t.workflow, Input::Redrive, t0());
    assert!(kinds(&t).contains(&"start_flow b0/a2/start".to_owned()));
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
}

#[test]
fn connector_authentication_on_create_flow_is_a_reconnect_too() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let t = step(
        &w,
        Input::Applied(vec![Outcome::Failed {
            key: key("b0/a1/create"),
            error: PermanentError {
                code: "ConnectorAuthenticationException".into(),
                message: "Unable to authenticate with Salesforce using connector profile sf".into(),
            },
        }]),
        t0(),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    assert_eq!(
        only(&t, HealthKind::WorkflowFailed)
            .detail
            .action
            .as_deref(),
        Some("reconnect")
    );
}

#[test]
fn a_degraded_integration_whose_connection_expired_recommends_reconnecting() {
    let mut w = live_wf(|_| {});
    let mut last = None;
    for n in 0..3 {
        let Input::RunEnded(mut r) = live_run(&format!("f{n}"), false, None) else {
            panic!()
        };
        r.error = Some(EXPIRED.into());
        let t = step(&w, Input::RunEnded(r), t0());
        w = t.workflow.clone();
        last = Some(t);
    }
    let t = last.unwrap();
    assert_eq!(t.workflow.status, WorkflowStatus::Degraded);
    let d = only(&t, HealthKind::IntegrationDegraded).detail;
    assert_eq!(d.action.as_deref(), Some("reconnect"));
    assert_eq!(
        d.command.as_deref(),
        Some("flowpilot integration rebuild acme")
    );
    assert_eq!(d.connector_profile.as_deref(), Some("sf"));
}

#[test]
fn a_spent_api_allowance_pauses_starts_without_spending_retries() {
    let policy = Policy {
        source_budget_wait: std::time::Duration::from_secs(600),
        ..Policy::default()
    };
    let at = |m: i64| t0() + TimeDelta::minutes(m);
    let go = |w: &Workflow, input: Input, now| decide(w, input, now, &policy);
    // Concurrency 2: batches 0 and 1 run; batch 0 is refused.
    let w = started_wf(|s| s.max_retries = Some(0));
    let t = go(&w, report(0, "x0", false, Some(LIMIT)), at(0));
    let b = &t.workflow.batches[0];
    assert_eq!(b.status, BatchStatus::RetryWait);
    assert!(b.paused);
    assert_eq!(b.retry_at, Some(at(10)));
    assert_eq!((b.budget_base, b.budget_waits), (1, 1));
    assert_eq!(t.workflow.paused_until(), Some(at(10)));
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
    let d = only(&t, HealthKind::WorkflowPaused).detail;
    assert_eq!(d.event_id, "acme/workflow-paused/b0/a1");
    assert_eq!(d.retry_at, Some(at(10)));
    assert_eq!(
        (d.action.as_deref(), d.transient),
        (Some("wait"), Some(true))
    );
    assert_eq!(d.connector_profile.as_deref(), Some("sf"));
    assert_eq!(d.error.as_deref(), Some(LIMIT));
    assert_eq!(
        d.command.as_deref(),
        Some("flowpilot workflow status acme --watch")
    );
    assert!(
        !events(&t)
            .iter()
            .any(|e| e.kind == HealthKind::BatchRetryScheduled)
    );
    assert!(kinds(&t).contains(&"schedule_retry b0/a1/retry".to_owned()));

    // Batch 1 succeeds meanwhile: its slot frees, but nothing starts during the pause.
    let t = go(&t.workflow, report(1, "x1", true, None), at(1));
    assert_eq!(t.workflow.batches[1].status, BatchStatus::Succeeded);
    assert!(
        !kinds(&t).iter().any(|k| k.starts_with("start_flow")),
        "{:?}",
        kinds(&t)
    );
    let t = go(&t.workflow, Input::Reconcile, at(5));
    assert!(!kinds(&t).iter().any(|k| k.starts_with("start_flow")));
    // An early timer does nothing; the due one starts batch 0 again and refills the slot.
    let early = Input::RetryDue {
        batch: 0,
        attempt: 1,
        due_at: at(10),
    };
    assert!(go(&t.workflow, early.clone(), at(9)).is_noop(&t.workflow));
    let t = go(&t.workflow, early, at(10));
    let k = kinds(&t);
    assert!(k.contains(&"start_flow b0/a2/start".to_owned()), "{k:?}");
    assert!(k.contains(&"start_flow b2/a1/start".to_owned()), "{k:?}");
    assert!(!t.workflow.batches[0].paused);
    assert_eq!(t.workflow.paused_until(), None);

    // Refused again and again: with max_retries 0, a retry would have failed it; a pause never
    // does, and no refused attempt counts against the budget.
    let mut w = t.workflow;
    for round in 2..6u32 {
        let exec = format!("x0-{round}");
        w = go(&w, started(0, round, &exec), at(10 * i64::from(round))).workflow;
        let t = go(
            &w,
            report(0, &exec, false, Some(LIMIT)),
            at(10 * i64::from(round)),
        );
        let b = &t.workflow.batches[0];
        assert_eq!(b.status, BatchStatus::RetryWait, "round {round}");
        assert_eq!(
            (b.attempt - b.budget_waits, b.attempt - b.budget_base),
            (0, 0)
        );
        let due = b.retry_at.unwrap();
        let t = go(
            &t.workflow,
            Input::RetryDue {
                batch: 0,
                attempt: round,
                due_at: due,
            },
            due,
        );
        w = t.workflow;
    }
    let w = go(&w, started(0, 6, "x0-6"), at(100)).workflow;
    let t = go(&w, report(0, "x0-6", true, None), at(100));
    let b = &t.workflow.batches[0];
    assert_eq!(b.status, BatchStatus::Succeeded);
    assert_eq!((b.attempt, b.budget_waits), (6, 5));
}

#[test]
fn a_batch_refused_while_the_workflow_is_failing_fails_with_it() {
    let w = started_wf(|_| {});
    // Batch 1 fails for good; batch 0's run, still going, is then refused for the allowance.
    let w = step(&w, report(1, "x1", false, Some("INVALID_FIELD: Foo")), t0()).workflow;
    assert_eq!(w.status, WorkflowStatus::Failed);
    let t = step(&w, report(0, "x0", false, Some(LIMIT)), t0());
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Failed);
    assert!(!t.workflow.batches[0].paused);
    assert!(
        !events(&t)
            .iter()
            .any(|e| e.kind == HealthKind::WorkflowPaused)
    );
    // Redrive resumes both.
    let t = step(&t.workflow, Input::Redrive, t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
}

#[test]
fn a_lost_resume_timer_is_restarted_by_reconcile() {
    let w = started_wf(|_| {});
    let t = step(&w, report(0, "x0", false, Some(LIMIT)), t0());
    let due = t.workflow.batches[0].retry_at.unwrap();
    assert_eq!(
        due,
        t0() + TimeDelta::hours(1),
        "the default wait is an hour"
    );
    let t = step(&t.workflow, Input::Reconcile, due + TimeDelta::minutes(6));
    assert!(kinds(&t).contains(&"start_flow b0/a2/start".to_owned()));
    let key = EffectKey::attempt(0, 2, AttemptStep::Start);
    assert!(t.workflow.outbox.iter().any(|e| e.key == key));
}
