//! A rebuild retires the previous generation's flow before it creates the next one, and runs or
//! deactivations of a flow that is not the current generation's count for nothing.

use super::*;
use crate::input::{ActiveRun, FlowRuns};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A linked generation 1 whose first run pulled up to 01:00, rebuilt at `t0`: it retires.
fn retiring(edit: impl FnOnce(&mut SpecInput)) -> Transition {
    let w = live_wf(edit);
    let w = step(&w, live_run("r1", true, Some("2026-01-01T01:00:00Z")), t0()).workflow;
    let t = step(&w, Input::Rebuild { reason: None }, t0());
    assert_eq!(t.workflow.status, WorkflowStatus::Rebuilding);
    assert!(t.workflow.live.as_ref().unwrap().retiring.is_some());
    t
}

fn runs(t: &Transition, runs: FlowRuns) -> Input {
    Input::Applied(vec![Outcome::Runs {
        key: runs_key(t),
        runs,
    }])
}

fn in_progress(id: &str, started: DateTime<Utc>) -> FlowRuns {
    FlowRuns {
        in_progress: vec![ActiveRun {
            execution_id: id.into(),
            started_at: Some(started),
        }],
        furthest_success: None,
    }
}

fn first_execution_from(flow: &crate::effect::FlowDefinition) -> DateTime<Utc> {
    let Trigger::Scheduled {
        first_execution_from,
        ..
    } = flow.trigger
    else {
        panic!("live flow not scheduled")
    };
    first_execution_from
}

fn creates(t: &Transition) -> bool {
    t.effects
        .iter()
        .any(|e| matches!(e.kind, EffectKind::CreateFlow { .. }))
}

#[test]
fn a_rebuild_waits_for_the_run_in_flight_and_resumes_after_it() {
    let t = retiring(|_| {});
    // AppFlow: r2 is still pulling. Nothing is deleted or created yet.
    let t = step(&t.workflow, runs(&t, in_progress("r2", t0())), t0());
    assert!(t.effects.is_empty(), "{:?}", kinds(&t));
    let live = t.workflow.live.clone().unwrap();
    assert_eq!(live.retiring.unwrap().in_progress, ["r2"]);
    assert_eq!(live.flow_name, "fp-acme-live");
    // A reconcile tick asks again; a second one while that question waits does not.
    let at1 = t0() + TimeDelta::minutes(1);
    let tick = step(&t.workflow, Input::Reconcile, at1);
    assert_eq!(
        kinds(&tick),
        [format!(
            "describe_runs live/g2/runs/{}",
            at1.timestamp_millis()
        )]
    );
    assert!(step(&tick.workflow, Input::Reconcile, at1).is_noop(&tick.workflow));
    // r2's End report: it wrote [01:00, 02:00), so the resume point moves; still no streak,
    // no status change, and no new question while one is pending.
    let ended = step(
        &tick.workflow,
        live_run("r2", true, Some("2026-01-01T02:00:00Z")),
        at1,
    );
    let live = ended.workflow.live.as_ref().unwrap();
    assert_eq!(ended.workflow.status, WorkflowStatus::Rebuilding);
    assert_eq!(live.last_good_pull_end, Some(at("2026-01-01T02:00:00Z")));
    assert!(ended.effects.is_empty());
    // The pending question was asked before r2 ended; its answer still lists r2 in progress,
    // but r2's End report was counted: it has ended. Generation 2 starts where r2 stopped.
    let t = step(&ended.workflow, runs(&tick, in_progress("r2", t0())), at1);
    assert_eq!(
        kinds(&t),
        [
            "delete_integration live/g2/delete-integration",
            "delete_flow live/g2/delete-flow",
            "create_flow live/g2/create",
            "put_integration live/g2/put"
        ]
    );
    let flow = live_create(&t, 2);
    assert_eq!(flow.name, "fp-acme-live-g2");
    assert_eq!(first_execution_from(&flow), at("2026-01-01T02:00:00Z"));
    assert!(t.workflow.live.as_ref().unwrap().retiring.is_none());
}

#[test]
fn an_end_report_of_the_retiring_flow_asks_again() {
    let t = retiring(|s| s.degraded_threshold = Some(1));
    let w = step(&t.workflow, runs(&t, in_progress("r2", t0())), t0()).workflow;
    // A failure of the retiring flow: counted in the totals, not in the streak or the status.
    let t2 = step(&w, live_run("r2", false, None), t0());
    let (before, after) = (w.live.as_ref().unwrap(), t2.workflow.live.as_ref().unwrap());
    assert_eq!(t2.workflow.status, WorkflowStatus::Rebuilding);
    assert_eq!(after.consecutive_failures, before.consecutive_failures);
    assert_eq!(after.runs_failed, before.runs_failed + 1);
    assert_eq!(
        kinds(&t2),
        [format!(
            "describe_runs live/g2/runs/{}",
            t0().timestamp_millis()
        )]
    );
    // Its duplicate changes nothing; a deactivation of the retiring flow neither.
    assert!(step(&t2.workflow, live_run("r2", false, None), t0()).is_noop(&t2.workflow));
    let deactivated = Input::FlowDeactivated {
        role: FlowRole::Live,
        flow_name: "fp-acme-live".into(),
        reason: "errors".into(),
    };
    assert!(step(&t2.workflow, deactivated, t0()).is_noop(&t2.workflow));
}

#[test]
fn a_success_whose_end_report_is_late_is_waited_for_then_taken_from_appflow() {
    let t = retiring(|_| {});
    let ended = t0() + TimeDelta::minutes(1);
    let success = |ended_at| FlowRuns {
        in_progress: Vec::new(),
        furthest_success: Some(RunReport {
            flow_name: "fp-acme-live".into(),
            role: FlowRole::Live,
            execution_id: Some("r2".into()),
            succeeded: true,
            error: None,
            records_processed: Some(5),
            record_failures: None,
            record_failure_message: None,
            pull_start: None,
            pull_end: Some(at("2026-01-01T02:59:00Z")),
            ended_at: Some(ended_at),
        }),
    };
    // r2 succeeded beyond the resume point a minute ago: its End report (with the exact
    // window) is probably on its way. Wait for it.
    let now = ended + TimeDelta::minutes(1);
    let w = step(&t.workflow, runs(&t, success(ended)), now).workflow;
    assert!(!w.outbox.iter().any(|e| e.key == key("live/g2/create")));
    // It arrives: the resume point is its window's end.
    let t2 = step(&w, live_run("r2", true, Some("2026-01-01T03:00:00Z")), now);
    let t3 = step(&t2.workflow, runs(&t2, success(ended)), now);
    assert_eq!(
        first_execution_from(&live_create(&t3, 2)),
        at("2026-01-01T03:00:00Z")
    );
    // Or it never arrives: past `describe_after`, AppFlow's record of the last record
    // transferred stands in (a pull from there may write it again, never miss one).
    let later = ended + TimeDelta::minutes(11);
    let tick = step(&w, Input::Reconcile, later);
    let t4 = step(&tick.workflow, runs(&tick, success(ended)), later);
    assert_eq!(
        first_execution_from(&live_create(&t4, 2)),
        at("2026-01-01T02:59:00Z")
    );
    // A success that pulled no further than the resume point changes nothing.
    let mut old = success(ended);
    if let Some(r) = old.furthest_success.as_mut() {
        r.pull_end = Some(at("2026-01-01T00:30:00Z"));
    }
    let t5 = step(&t.workflow, runs(&t, old), now);
    assert_eq!(
        first_execution_from(&live_create(&t5, 2)),
        at("2026-01-01T01:00:00Z")
    );
}

#[test]
fn a_run_stuck_past_the_maximum_duration_is_cancelled_and_the_rebuild_says_so() {
    let t = retiring(|_| {});
    // Started 5 h ago (max 6 h): wait.
    let young = in_progress("r2", t0() - TimeDelta::hours(5));
    let w = step(&t.workflow, runs(&t, young.clone()), t0()).workflow;
    assert!(!w.outbox.iter().any(|e| e.key == key("live/g2/create")));
    // Two hours later it is still running: cancel it and go on.
    let now = t0() + TimeDelta::hours(2);
    let tick = step(&w, Input::Reconcile, now);
    let t2 = step(&tick.workflow, runs(&tick, young), now);
    assert_eq!(
        kinds(&t2),
        [
            "cancel_run live/g2/cancel/0",
            "delete_integration live/g2/delete-integration",
            "delete_flow live/g2/delete-flow",
            "create_flow live/g2/create",
            "put_integration live/g2/put"
        ]
    );
    let EffectKind::CancelRun {
        flow_name,
        execution_id,
    } = &t2.effects[0].kind
    else {
        panic!()
    };
    assert_eq!(
        (flow_name.as_str(), execution_id.as_str()),
        ("fp-acme-live", "r2")
    );
    // The cancelled run's late End report does not count for generation 2.
    let late = step(
        &t2.workflow,
        live_run("r2", false, Some("2026-01-01T02:00:00Z")),
        now,
    );
    assert!(late.is_noop(&t2.workflow));
    // Integration Rebuilt says what the cancel costs.
    let linked = Input::Applied(vec![Outcome::Linked {
        key: key("live/g2/put"),
        generation: 2,
        uri: "arn:2".into(),
    }]);
    let t3 = step(&t2.workflow, linked, now);
    let ev = &events(&t3)[0];
    assert_eq!(ev.kind, HealthKind::IntegrationRebuilt);
    assert_eq!(ev.detail.flow_name.as_deref(), Some("fp-acme-live-g2"));
    let note = ev.detail.error.as_deref().unwrap();
    assert!(
        note.contains("r2") && note.contains("duplicate") && note.contains("fp-acme-live"),
        "{note}"
    );
    assert!(t3.workflow.live.as_ref().unwrap().rebuild_note.is_none());
    // Retiring for longer than the maximum run duration makes any run stuck.
    let fresh = in_progress("r3", t0() + TimeDelta::hours(6));
    let now = t0() + TimeDelta::hours(7);
    let tick = step(&w, Input::Reconcile, now);
    assert!(creates(&step(&tick.workflow, runs(&tick, fresh), now)));
}

#[test]
fn a_question_that_fails_for_good_is_asked_again_then_given_up_on() {
    let t = retiring(|_| {});
    let denied = |t: &Transition| {
        Input::Applied(vec![Outcome::Failed {
            key: runs_key(t),
            error: PermanentError {
                code: "AccessDeniedException".into(),
                message: "not authorized to perform: appflow:DescribeFlowExecutionRecords".into(),
            },
        }])
    };
    let now = t0() + TimeDelta::hours(1);
    let w = step(&t.workflow, denied(&t), now).workflow;
    assert!(w.live.as_ref().unwrap().retiring.is_some());
    assert!(!w.outbox.iter().any(|e| e.key == key("live/g2/create")));
    let now = t0() + TimeDelta::hours(7);
    let tick = step(&w, Input::Reconcile, now);
    let t2 = step(&tick.workflow, denied(&tick), now);
    assert!(creates(&t2));
    let note = t2.workflow.live.as_ref().unwrap().rebuild_note.clone();
    assert!(note.is_some_and(|n| n.contains("AccessDeniedException")));
}

#[test]
fn runs_of_a_retired_generation_count_for_nothing() {
    let t = retiring(|s| s.degraded_threshold = Some(1));
    let t = step(&t.workflow, runs(&t, FlowRuns::default()), t0());
    let linked = Input::Applied(vec![Outcome::Linked {
        key: key("live/g2/put"),
        generation: 2,
        uri: "arn:2".into(),
    }]);
    let w = step(&t.workflow, linked, t0()).workflow;
    assert_eq!(w.status, WorkflowStatus::Live);
    // Generation 1's late failure and deactivation, even with a threshold of 1: nothing.
    for input in [
        live_run("late", false, None),
        Input::FlowDeactivated {
            role: FlowRole::Live,
            flow_name: "fp-acme-live".into(),
            reason: "errors".into(),
        },
        // Its late success does not move the start generation 2 already has.
        live_run("late-ok", true, Some("2026-01-01T09:00:00Z")),
    ] {
        assert!(step(&w, input, t0()).is_noop(&w));
    }
    // Generation 2's own failure counts.
    let t2 = step(
        &w,
        live_run_of("fp-acme-live-g2", "g2r1", false, None),
        t0(),
    );
    assert_eq!(t2.workflow.status, WorkflowStatus::Degraded);
    // And its deactivation degrades it.
    let deactivated = Input::FlowDeactivated {
        role: FlowRole::Live,
        flow_name: "fp-acme-live-g2".into(),
        reason: "errors".into(),
    };
    assert_eq!(
        step(&w, deactivated, t0()).workflow.status,
        WorkflowStatus::Degraded
    );
}

#[test]
fn a_redrive_after_a_failed_link_has_nothing_to_retire() {
    // Generation 1 never linked (no integration): its flow never ran, nothing to wait for.
    let w = wf(|s| s.from = Some("2025-12-01".into()));
    let w = step(&w, Input::Start, t0()).workflow;
    let err = PermanentError {
        code: "AccessDeniedException".into(),
        message: "no".into(),
    };
    let failed = Input::Applied(vec![Outcome::Failed {
        key: key("live/g1/put"),
        error: err,
    }]);
    let w = step(&w, failed, t0()).workflow;
    let t = step(&w, Input::Redrive, t0());
    assert!(t.workflow.live.as_ref().unwrap().retiring.is_none());
    assert_eq!(live_create(&t, 2).name, "fp-acme-live-g2");
}
