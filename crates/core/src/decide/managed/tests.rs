use chrono::{DateTime, TimeDelta, Utc};

use super::super::{Policy, Transition, decide};
use crate::effect::{
    EffectKey, EffectKind, ManagedStep, ManagedStepView, ManagedView, Outcome, PermanentError,
};
use crate::health::HealthKind;
use crate::ids::WorkflowId;
use crate::input::Input;
use crate::model::{BatchStatus, Workflow, WorkflowStatus};
use crate::spec::tests::spec_with;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn at(s: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(s)
}

/// Four P6M batches over 2024-2026, managed engine.
fn managed() -> Workflow {
    let spec = spec_with(|s| {
        s.batch_size = Some("P6M".into());
        s.engine = Some("managed".into());
    });
    Workflow::new(WorkflowId::new("acme").unwrap(), spec, t0())
}

fn run(w: &Workflow, input: Input, now: DateTime<Utc>) -> Transition {
    let t = decide(w, input, now, &Policy::default());
    assert!(t.is_noop(w) || t.workflow.version == w.version + 1);
    t
}

fn events(t: &Transition) -> Vec<(HealthKind, String)> {
    t.effects
        .iter()
        .filter_map(|e| match &e.kind {
            EffectKind::Publish { event } => Some((event.kind, event.detail.event_id.clone())),
            _ => None,
        })
        .collect()
}

fn created(w: &Workflow, g: u32, id: &str) -> Workflow {
    let key = EffectKey::Managed {
        generation: g,
        step: ManagedStep::Create,
    };
    run(
        w,
        Input::Applied(vec![Outcome::ManagedCreated {
            key,
            generation: g,
            workflow_id: id.into(),
        }]),
        at(1),
    )
    .workflow
}

/// Asks (reconcile) and answers with `view`.
fn seen(w: &Workflow, view: ManagedView, now: DateTime<Utc>) -> Transition {
    let asked = run(w, Input::Reconcile, now);
    let key = asked
        .workflow
        .outbox
        .iter()
        .find(|e| matches!(e.kind, EffectKind::WatchManaged { .. }))
        .map(|e| e.key.clone())
        .expect("a watch is queued");
    let g = asked.workflow.managed.as_ref().unwrap().generation;
    run(
        &asked.workflow,
        Input::Applied(vec![Outcome::ManagedSeen {
            key,
            generation: g,
            view,
        }]),
        now,
    )
}

fn step(g: u32, n: u32, status: &str, records: u64, message: Option<&str>) -> ManagedStepView {
    ManagedStepView {
        flow_name: format!("fp-acme-m{g}-s{n}"),
        status: status.into(),
        records,
        message: message.map(str::to_owned),
    }
}

fn view(status: &str, steps: Vec<ManagedStepView>) -> ManagedView {
    ManagedView {
        status: status.into(),
        error: None,
        steps,
    }
}

#[test]
fn start_submits_every_planned_batch_as_one_managed_workflow() {
    let w = managed();
    let t = run(&w, Input::Start, t0());
    let creates: Vec<_> = t
        .effects
        .iter()
        .filter_map(|e| match &e.kind {
            EffectKind::CreateIntegrationWorkflow {
                batches,
                flow,
                generation,
                ..
            } => Some((batches.clone(), flow.clone(), *generation)),
            EffectKind::CreateFlow { .. } | EffectKind::StartFlow { .. } => {
                panic!("the managed engine starts no flow of its own")
            }
            _ => None,
        })
        .collect();
    assert_eq!(creates.len(), 1);
    let (batches, flow, g) = &creates[0];
    assert_eq!(*g, 1);
    assert_eq!(flow.name, "fp-acme-m1");
    assert!(flow.filter.is_none());
    let windows: Vec<_> = w.batches.iter().map(|b| b.window).collect();
    assert_eq!(batches, &windows);
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
    assert!(
        t.workflow
            .batches
            .iter()
            .all(|b| b.status == BatchStatus::Running)
    );
    assert_eq!(events(&t)[0].0, HealthKind::WorkflowStarted);
}

#[test]
fn steps_and_completion_map_to_the_flowpilot_engines_events() {
    let w = run(&managed(), Input::Start, t0()).workflow;
    let n = w.batches.len() as u32;
    let w = created(&w, 1, "wf-1");
    // A step End report asks Customer Profiles; a second one while asking does not ask twice.
    let t = run(
        &w,
        Input::ManagedStepEnded {
            generation: 1,
            step: 0,
        },
        at(2),
    );
    assert_eq!(t.effects.len(), 1);
    assert!(matches!(t.effects[0].kind, EffectKind::WatchManaged { .. }));
    let again = run(
        &t.workflow,
        Input::ManagedStepEnded {
            generation: 1,
            step: 1,
        },
        at(3),
    );
    assert!(again.is_noop(&t.workflow));
    // A report of an older generation or an unknown step is ignored.
    for (g, s) in [(2, 0), (1, n)] {
        let t = run(
            &w,
            Input::ManagedStepEnded {
                generation: g,
                step: s,
            },
            at(2),
        );
        assert!(t.is_noop(&w));
    }

    let t = seen(
        &w,
        view(
            "ACTIVE",
            vec![
                step(1, 0, "COMPLETE", 10, None),
                step(1, 1, "RETRY", 0, Some("Internal server error")),
            ],
        ),
        at(10),
    );
    let ev = events(&t);
    assert_eq!(
        ev,
        vec![
            (HealthKind::BatchSucceeded, "acme/batch-succeeded/b0".into()),
            (
                HealthKind::BatchRetryScheduled,
                "acme/batch-retry-scheduled/b1/a1".into()
            )
        ]
    );
    assert_eq!(t.workflow.batches[0].status, BatchStatus::Succeeded);
    assert_eq!(t.workflow.batches[0].records, 10);
    // The same answer again changes nothing but the pending watch: no duplicate events.
    let w = t.workflow;
    let t = seen(
        &w,
        view(
            "ACTIVE",
            vec![
                step(1, 0, "COMPLETE", 10, None),
                step(1, 1, "RETRY", 0, Some("x")),
            ],
        ),
        at(20),
    );
    assert!(events(&t).is_empty());
    let all: Vec<_> = (0..n).map(|i| step(1, i, "COMPLETE", 10, None)).collect();
    let t = seen(&t.workflow, view("COMPLETE", all), at(30));
    let kinds: Vec<_> = events(&t).into_iter().map(|(k, _)| k).collect();
    let mut want = vec![HealthKind::BatchSucceeded; n as usize - 1];
    want.push(HealthKind::WorkflowCompleted);
    assert_eq!(kinds, want);
    assert_eq!(t.workflow.status, WorkflowStatus::Live);
    assert!(t.workflow.batches.iter().all(|b| b.records == 10));
}

#[test]
fn a_failed_managed_workflow_fails_with_a_redrive_and_redrive_submits_only_the_rest() {
    let w = run(&managed(), Input::Start, t0()).workflow;
    let n = w.batches.len();
    let w = created(&w, 1, "wf-1");
    let mut failed = view(
        "FAILED",
        vec![
            step(1, 0, "COMPLETE", 10, None),
            step(
                1,
                1,
                "FAILED",
                0,
                Some("INVALID_FIELD: No such column 'Foo'"),
            ),
        ],
    );
    failed.error = Some("step 1 failed".into());
    let t = seen(&w, failed, at(10));
    let ev = events(&t);
    let failed_event = ev
        .iter()
        .find(|(k, _)| *k == HealthKind::WorkflowFailed)
        .expect("Workflow Failed");
    assert_eq!(failed_event.1, "acme/workflow-failed/r0");
    let cmd = t
        .effects
        .iter()
        .find_map(|e| match &e.kind {
            EffectKind::Publish { event } if event.kind == HealthKind::WorkflowFailed => {
                event.detail.command.clone()
            }
            _ => None,
        })
        .unwrap();
    assert!(cmd.contains("redrive"), "{cmd}");
    // Every batch but the completed one failed (the steps never reached too).
    let failed_batches = ev
        .iter()
        .filter(|(k, _)| *k == HealthKind::BatchFailed)
        .count();
    assert_eq!(failed_batches, n - 1);
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);

    let r = run(&t.workflow, Input::Redrive, at(100));
    let (batches, g) = r
        .effects
        .iter()
        .find_map(|e| match &e.kind {
            EffectKind::CreateIntegrationWorkflow {
                batches,
                generation,
                ..
            } => Some((batches.clone(), *generation)),
            _ => None,
        })
        .unwrap();
    assert_eq!(g, 2);
    let missing: Vec<_> = w.batches[1..].iter().map(|b| b.window).collect();
    assert_eq!(batches, missing);
    assert_eq!(r.workflow.batches[0].status, BatchStatus::Succeeded);
    assert_eq!(r.workflow.status, WorkflowStatus::Backfilling);
    // Generation 1's late answers no longer count.
    let old = run(
        &r.workflow,
        Input::ManagedStepEnded {
            generation: 1,
            step: 1,
        },
        at(101),
    );
    assert!(old.is_noop(&r.workflow));
    let w2 = created(&r.workflow, 2, "wf-2");
    let done: Vec<_> = (0..(n as u32 - 1))
        .map(|i| step(2, i, "COMPLETE", 10, None))
        .collect();
    let t = seen(&w2, view("COMPLETE", done), at(200));
    assert_eq!(t.workflow.status, WorkflowStatus::Live);
    assert!(
        t.workflow
            .batches
            .iter()
            .all(|b| b.status == BatchStatus::Succeeded && b.records == 10)
    );
}

#[test]
fn create_failing_for_good_fails_the_workflow() {
    let w = run(&managed(), Input::Start, t0()).workflow;
    let key = EffectKey::Managed {
        generation: 1,
        step: ManagedStep::Create,
    };
    let t = run(
        &w,
        Input::Applied(vec![Outcome::Failed {
            key,
            error: PermanentError {
                code: "AccessDeniedException".into(),
                message: "not authorized to perform iam:PassRole".into(),
            },
        }]),
        at(1),
    );
    assert_eq!(t.workflow.status, WorkflowStatus::Failed);
    let err = t.workflow.last_error.unwrap().message;
    assert!(err.contains("AccessDeniedException"), "{err}");
}

#[test]
fn cancel_deletes_the_managed_workflow_and_no_flow() {
    let w = created(&run(&managed(), Input::Start, t0()).workflow, 1, "wf-1");
    let t = run(&w, Input::Cancel { reason: None }, at(5));
    let kinds: Vec<_> = t
        .effects
        .iter()
        .filter(|e| !matches!(e.kind, EffectKind::Publish { .. }))
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        vec![EffectKind::DeleteManaged {
            domain: "acme".into(),
            workflow_id: "wf-1".into()
        }]
    );
    // Created only after the cancel: deleted when the answer comes.
    let w = run(&managed(), Input::Start, t0()).workflow;
    let c = run(&w, Input::Cancel { reason: None }, at(1)).workflow;
    let t = run(
        &c,
        Input::Applied(vec![Outcome::ManagedCreated {
            key: EffectKey::Managed {
                generation: 1,
                step: ManagedStep::Create,
            },
            generation: 1,
            workflow_id: "wf-late".into(),
        }]),
        at(2),
    );
    assert!(t.effects.iter().any(|e| e.kind
        == EffectKind::DeleteManaged {
            domain: "acme".into(),
            workflow_id: "wf-late".into()
        }));
}

#[test]
fn flowpilot_engine_workflows_ignore_managed_inputs() {
    let spec = spec_with(|s| s.batch_size = Some("P6M".into()));
    let w = Workflow::new(WorkflowId::new("acme").unwrap(), spec, t0());
    let w = run(&w, Input::Start, t0()).workflow;
    let t = run(
        &w,
        Input::ManagedStepEnded {
            generation: 1,
            step: 0,
        },
        at(1),
    );
    assert!(t.is_noop(&w));
}

fn live_report(flow: &str, exec: &str, ok: bool) -> Input {
    Input::RunEnded(crate::input::RunReport {
        flow_name: flow.into(),
        role: crate::ids::FlowRole::Live,
        execution_id: Some(exec.into()),
        succeeded: ok,
        error: (!ok).then(|| "Internal server error".to_owned()),
        records_processed: Some(5),
        record_failures: Some(0),
        record_failure_message: None,
        pull_start: None,
        pull_end: None,
        ended_at: None,
    })
}

#[test]
fn the_continuous_integration_is_found_watched_and_rebuilt_with_flowpilots_own_flow() {
    let w = run(&managed(), Input::Start, t0()).workflow;
    let n = w.batches.len() as u32;
    let w = created(&w, 1, "wf-1");
    let all: Vec<_> = (0..n).map(|i| step(1, i, "COMPLETE", 10, None)).collect();
    let t = seen(&w, view("COMPLETE", all), at(30));
    let find = t
        .effects
        .iter()
        .find(|e| matches!(e.kind, EffectKind::FindManagedIntegration { .. }))
        .expect("the integration is looked for")
        .key
        .clone();
    // Not there yet: asked again on the next tick.
    let w = run(
        &t.workflow,
        Input::Applied(vec![Outcome::ManagedIntegration {
            key: find,
            generation: 1,
            uri: None,
        }]),
        at(31),
    )
    .workflow;
    assert!(w.live.is_none());
    let t = run(&w, Input::Reconcile, at(40));
    let find = t
        .effects
        .iter()
        .find(|e| matches!(e.kind, EffectKind::FindManagedIntegration { .. }))
        .expect("asked again")
        .key
        .clone();
    let uri = "arn:aws:appflow:us-east-1:123456789012:flow/fp-acme-m1-live";
    let w = run(
        &t.workflow,
        Input::Applied(vec![Outcome::ManagedIntegration {
            key: find,
            generation: 1,
            uri: Some(uri.into()),
        }]),
        at(41),
    )
    .workflow;
    let live = w.live.clone().expect("watched");
    assert_eq!(live.flow_name, "fp-acme-m1-live");
    assert_eq!(live.uri.as_deref(), Some(uri));
    // Its runs count like flowpilot's own live flow's: failures degrade it.
    let mut w = run(&w, live_report("fp-acme-m1-live", "l1", true), at(50)).workflow;
    assert_eq!(w.live.as_ref().unwrap().runs_succeeded, 1);
    let mut degraded = false;
    for i in 0..3 {
        let t = run(
            &w,
            live_report("fp-acme-m1-live", &format!("f{i}"), false),
            at(60 + i),
        );
        degraded |= events(&t)
            .iter()
            .any(|(k, _)| *k == HealthKind::IntegrationDegraded);
        w = t.workflow;
    }
    assert!(degraded);
    assert_eq!(w.status, WorkflowStatus::Degraded);
    // A rebuild retires the managed flow and its integration, then links flowpilot's own.
    let t = run(&w, Input::Rebuild { reason: None }, at(100));
    assert_eq!(t.workflow.status, WorkflowStatus::Rebuilding);
    let live = t.workflow.live.as_ref().unwrap();
    assert_eq!(live.generation, 2);
    assert!(t.effects.iter().any(|e| matches!(&e.kind,
        EffectKind::StopFlow { flow_name } if flow_name == "fp-acme-m1-live")));
}

#[test]
fn a_step_without_progress_past_the_maximum_run_duration_stalls_once() {
    let w = created(&run(&managed(), Input::Start, t0()).workflow, 1, "wf-1");
    let max = Policy::default().max_run_duration.as_secs() as i64;
    // Within the maximum run duration: nothing.
    let t = run(&w, Input::Reconcile, at(max - 10));
    assert!(events(&t).is_empty());
    let t = run(&w, Input::Reconcile, at(max + 10));
    assert_eq!(
        events(&t),
        vec![(
            HealthKind::WorkflowStalled,
            "acme/workflow-stalled/b0/a1".to_owned()
        )]
    );
    // Once per step, and nothing is cancelled.
    let again = run(&t.workflow, Input::Reconcile, at(max + 20));
    assert!(events(&again).is_empty());
    assert_eq!(t.workflow.status, WorkflowStatus::Backfilling);
    // The next step is judged from the previous one's end.
    let t = seen(
        &again.workflow,
        view("ACTIVE", vec![step(1, 0, "COMPLETE", 10, None)]),
        at(max + 30),
    );
    let quiet = run(&t.workflow, Input::Reconcile, at(2 * max));
    assert!(events(&quiet).is_empty());
    let stalled = run(&quiet.workflow, Input::Reconcile, at(2 * max + 40));
    assert_eq!(
        events(&stalled),
        vec![(
            HealthKind::WorkflowStalled,
            "acme/workflow-stalled/b1/a1".to_owned()
        )]
    );
}
