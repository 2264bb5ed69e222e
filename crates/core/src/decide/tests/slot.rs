//! The shared run budget refused a slot: the batch waits without spending a retry, asks again,
//! and a long wait is reported once.

use super::*;
use crate::effect::{AttemptStep, SlotDenial};

fn denied(batch: u32, attempt: u32) -> Input {
    Input::Applied(vec![Outcome::SlotDenied {
        key: EffectKey::attempt(batch, attempt, AttemptStep::Start),
        attempt,
        denial: SlotDenial {
            scope: "profile sf".into(),
            in_use: 5,
            limit: 5,
            quota: false,
        },
    }])
}

#[test]
fn a_refused_batch_waits_asks_again_and_spends_no_retry() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let t = step(&w, denied(1, 1), t0());
    let b = &t.workflow.batches[1];
    assert_eq!(b.status, BatchStatus::RetryWait);
    assert_eq!(b.budget_base, 1, "the refused attempt is free");
    let wait = b.slot_wait.as_ref().unwrap();
    assert_eq!((wait.in_use, wait.limit, wait.denials), (5, 5, 1));
    assert_eq!(wait.since, t0());
    let due = t0() + TimeDelta::seconds(10);
    assert_eq!(b.retry_at, Some(due));
    assert_eq!(kinds(&t), vec!["schedule_retry b1/a1/retry"]);
    // Batch 0 keeps running, nothing else starts: the waiting batch keeps its place.
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Running);
    assert_eq!(t.workflow.batches[2].status, BatchStatus::Pending);

    // Asking again is a new attempt; refused again, the wait keeps its start.
    let w = step(
        &t.workflow,
        Input::RetryDue {
            batch: 1,
            attempt: 1,
            due_at: due,
        },
        due,
    )
    .workflow;
    assert_eq!(w.batches[1].attempt, 2);
    let w = step(&w, denied(1, 2), due).workflow;
    let b = &w.batches[1];
    assert_eq!(b.budget_base, 2);
    assert_eq!(b.slot_wait.as_ref().unwrap().since, t0());
    assert_eq!(b.slot_wait.as_ref().unwrap().denials, 2);

    // Granted at last: the run starts and the wait is over.
    let at = due + TimeDelta::seconds(10);
    let w = step(
        &w,
        Input::RetryDue {
            batch: 1,
            attempt: 2,
            due_at: at,
        },
        at,
    )
    .workflow;
    let w = step(&w, started(1, 3, "x1"), at).workflow;
    assert_eq!(w.batches[1].status, BatchStatus::Running);
    assert!(w.batches[1].slot_wait.is_none());
}

#[test]
fn a_stale_or_duplicate_refusal_changes_nothing() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let w = step(&w, started(0, 1, "x0"), t0()).workflow;
    // Batch 0 started: a refusal of that attempt cannot be (its effect left the outbox).
    assert!(step(&w, denied(0, 1), t0()).is_noop(&w));
    let t = step(&w, denied(1, 1), t0());
    assert!(step(&t.workflow, denied(1, 1), t0()).is_noop(&t.workflow));
}

#[test]
fn a_long_wait_is_reported_once() {
    let mut w = step(&four(|_| {}), Input::Start, t0()).workflow;
    let mut at = t0();
    let mut reported = Vec::new();
    for attempt in 1..=120 {
        let t = step(&w, denied(1, attempt), at);
        reported.extend(
            events(&t)
                .into_iter()
                .filter(|e| e.kind == HealthKind::BatchWaitingForSlot),
        );
        at += TimeDelta::seconds(10);
        w = step(
            &t.workflow,
            Input::RetryDue {
                batch: 1,
                attempt,
                due_at: at,
            },
            at,
        )
        .workflow;
    }
    assert_eq!(reported.len(), 1, "{reported:?}");
    let d = &reported[0].detail;
    assert_eq!(d.action.as_deref(), Some("wait"));
    assert_eq!(d.connector_profile.as_deref(), Some("sf"));
    assert!(
        d.error
            .as_deref()
            .unwrap()
            .starts_with("waiting for a run slot on profile sf: 5/5 in use"),
        "{d:?}"
    );
    // 15 minutes after the first refusal (90 questions of 10 s).
    assert_eq!(d.batch.as_ref().unwrap().index, 1);
    assert_eq!(d.attempt, Some(91));
    assert_eq!(w.batches[1].budget_base, 120);
}

fn refused(batch: u32, attempt: u32, step: AttemptStep) -> Outcome {
    Outcome::SlotDenied {
        key: EffectKey::attempt(batch, attempt, step),
        attempt,
        denial: SlotDenial {
            scope: "flows".into(),
            in_use: 3,
            limit: 3,
            quota: true,
        },
    }
}

#[test]
fn a_refused_create_flow_waits_like_a_refused_run_and_creates_the_flow_again() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    assert!(w.batches[1].flow_ready);
    // AppFlow refused batch 1's CreateFlow for a quota; the shell refuses its StartFlow too.
    let t = step(
        &w,
        Input::Applied(vec![
            refused(1, 1, AttemptStep::Create),
            refused(1, 1, AttemptStep::Start),
        ]),
        t0(),
    );
    let b = &t.workflow.batches[1];
    assert_eq!(b.status, BatchStatus::RetryWait, "waits, does not fail");
    assert!(!b.flow_ready, "the flow was not created");
    assert_eq!(b.budget_base, 1, "the refused attempt is free");
    let wait = b.slot_wait.as_ref().unwrap();
    assert!(wait.quota);
    assert_eq!((wait.limit, wait.denials), (3, 1));
    assert_eq!(kinds(&t), vec!["schedule_retry b1/a1/retry"]);
    assert_ne!(t.workflow.status, WorkflowStatus::Failed);

    // Its next attempt creates the flow before starting it.
    let due = t0() + TimeDelta::seconds(10);
    let t = step(
        &t.workflow,
        Input::RetryDue {
            batch: 1,
            attempt: 1,
            due_at: due,
        },
        due,
    );
    let k = kinds(&t);
    assert!(
        k.iter().any(|k| k.starts_with("create_flow b1/a2")),
        "{k:?}"
    );
    assert!(k.iter().any(|k| k.starts_with("start_flow b1/a2")), "{k:?}");
}

#[test]
fn a_refused_create_ahead_only_forgets_the_flow() {
    let w = step(&four(|_| {}), Input::Start, t0()).workflow;
    // With concurrency 2 of 4 batches, batch 2's flow is created ahead under attempt 1.
    let ahead = w
        .batches
        .iter()
        .find(|b| b.status == BatchStatus::Pending && b.flow_ready)
        .map(|b| b.index)
        .expect("a flow created ahead of its batch's turn");
    let i = ahead;
    let t = step(
        &w,
        Input::Applied(vec![refused(i, 1, AttemptStep::Create)]),
        t0(),
    );
    let b = &t.workflow.batches[i as usize];
    assert_eq!(b.status, BatchStatus::Pending);
    assert!(!b.flow_ready);
    assert!(b.slot_wait.is_none());
}
