//! The managed engine's decisions (`decide::managed`) under any sequence of what Customer
//! Profiles may answer — step statuses in any order, repeated, contradicted later, workflow
//! statuses arriving early or late, redrives — and of step End reports and reconcile ticks:
//!
//! - every health event id is published at most once over the workflow's life;
//! - a batch that succeeded stays succeeded with its records, and never runs again (a redrive
//!   submits exactly the batches not done, in window order);
//! - `Batch Succeeded` events = batches succeeded; `Workflow Completed` only with every batch
//!   succeeded; `Workflow Failed` carries the redrive command;
//! - the managed engine never asks for a flowpilot flow (CreateFlow / StartFlow) while
//!   backfilling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use flowpilot_core::decide::{Policy, Transition, decide};
use flowpilot_core::effect::{
    EffectKey, EffectKind, ManagedStep, ManagedStepView, ManagedView, Outcome,
};
use flowpilot_core::health::HealthKind;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::input::Input;
use flowpilot_core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot_core::spec::SpecInput;
use proptest::prelude::*;

const STEP_STATUSES: [&str; 7] = [
    "COMPLETE",
    "RETRY",
    "FAILED",
    "IN_PROGRESS",
    "SPLIT",
    "CANCELLED",
    "NOT_STARTED",
];
const WORKFLOW_STATUSES: [&str; 5] = ["ACTIVE", "IN_PROGRESS", "COMPLETE", "FAILED", "RETRY"];

#[derive(Clone, Debug)]
enum Step {
    /// Answer the pending watch (asking first on a tick) with these step statuses (by step
    /// number, modulo the submission's steps) and this workflow status.
    Seen {
        steps: Vec<(usize, usize, u64)>,
        status: usize,
    },
    Ended(u32),
    Tick,
    Redrive,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (
            prop::collection::vec((0usize..12, 0usize..STEP_STATUSES.len(), 0u64..50), 0..6),
            0usize..WORKFLOW_STATUSES.len()
        )
            .prop_map(|(steps, status)| Step::Seen { steps, status }),
        1 => (0u32..12).prop_map(Step::Ended),
        1 => Just(Step::Tick),
        1 => Just(Step::Redrive),
    ]
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn managed() -> Workflow {
    let spec = SpecInput {
        domain: Some("acme".into()),
        object_type: Some("Account".into()),
        connector: Some("salesforce".into()),
        connector_profile: Some("sf".into()),
        object: Some("Account".into()),
        from: Some("2024-01-01".into()),
        batch_size: Some("P3M".into()),
        engine: Some("managed".into()),
        ..Default::default()
    }
    .validate(t0())
    .unwrap();
    Workflow::new(WorkflowId::new("acme").unwrap(), spec, t0())
}

struct Run {
    wf: Workflow,
    now: DateTime<Utc>,
    published: Vec<(HealthKind, String, Option<String>)>,
    /// Batches that succeeded, with their records.
    succeeded: Vec<(u32, u64)>,
}

impl Run {
    fn apply(&mut self, input: Input) -> Transition {
        self.now += TimeDelta::seconds(7);
        let t = decide(&self.wf, input, self.now, &Policy::default());
        for e in &t.effects {
            match &e.kind {
                EffectKind::Publish { event } => self.published.push((
                    event.kind,
                    event.detail.event_id.clone(),
                    event.detail.command.clone(),
                )),
                EffectKind::CreateFlow { .. } | EffectKind::StartFlow { .. }
                    if self.wf.status == WorkflowStatus::Backfilling =>
                {
                    panic!("the managed engine asked for a flow of its own: {e:?}")
                }
                _ => {}
            }
        }
        // Invariant: succeeded batches stay as they were.
        for &(i, records) in &self.succeeded {
            let b = &t.workflow.batches[i as usize];
            assert_eq!(
                (b.status, b.records),
                (BatchStatus::Succeeded, records),
                "batch {i}"
            );
        }
        self.wf = t.workflow.clone();
        self.succeeded = self
            .wf
            .batches
            .iter()
            .filter(|b| b.status == BatchStatus::Succeeded)
            .map(|b| (b.index, b.records))
            .collect();
        // Effects the shell would just do: CreateIntegrationWorkflow answers an id.
        let created: Vec<Outcome> = t
            .effects
            .iter()
            .filter_map(|e| match (&e.key, &e.kind) {
                (
                    EffectKey::Managed {
                        step: ManagedStep::Create,
                        ..
                    },
                    EffectKind::CreateIntegrationWorkflow { generation, .. },
                ) => Some(Outcome::ManagedCreated {
                    key: e.key.clone(),
                    generation: *generation,
                    workflow_id: format!("cp-{generation}"),
                }),
                _ => None,
            })
            .collect();
        if !created.is_empty() {
            let t2 = decide(
                &self.wf,
                Input::Applied(created),
                self.now,
                &Policy::default(),
            );
            self.wf = t2.workflow;
        }
        t
    }

    fn pending_watch(&self) -> Option<EffectKey> {
        self.wf
            .outbox
            .iter()
            .find(|e| matches!(e.kind, EffectKind::WatchManaged { .. }))
            .map(|e| e.key.clone())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn managed_decisions_keep_their_invariants(steps in prop::collection::vec(arb_step(), 1..40)) {
        let mut r = Run { wf: managed(), now: t0(), published: Vec::new(), succeeded: Vec::new() };
        r.apply(Input::Start);
        for step in steps {
            match step {
                Step::Seen { steps, status } => {
                    if r.pending_watch().is_none() {
                        r.apply(Input::Reconcile);
                    }
                    let Some(key) = r.pending_watch() else { continue };
                    let m = r.wf.managed.clone().unwrap();
                    let n = m.steps.len().max(1);
                    let view = ManagedView {
                        status: WORKFLOW_STATUSES[status].to_owned(),
                        error: Some("the service said no".into()),
                        steps: steps
                            .into_iter()
                            .map(|(s, st, records)| ManagedStepView {
                                flow_name: format!("fp-acme-m{}-s{}", m.generation, s % n),
                                status: STEP_STATUSES[st].to_owned(),
                                records,
                                message: None,
                            })
                            .collect(),
                    };
                    let t = r.apply(Input::Applied(vec![Outcome::ManagedSeen {
                        key,
                        generation: m.generation,
                        view,
                    }]));
                    if t.workflow.status == WorkflowStatus::Live {
                        prop_assert!(t.workflow.batches.iter().all(|b| b.status == BatchStatus::Succeeded));
                    }
                }
                Step::Ended(s) => {
                    let g = r.wf.managed.as_ref().map_or(1, |m| m.generation);
                    r.apply(Input::ManagedStepEnded { generation: g, step: s });
                }
                Step::Tick => {
                    r.apply(Input::Reconcile);
                }
                Step::Redrive => {
                    let was_failed = r.wf.status == WorkflowStatus::Failed;
                    let missing: Vec<u32> = r
                        .wf
                        .batches
                        .iter()
                        .filter(|b| b.status != BatchStatus::Succeeded)
                        .map(|b| b.index)
                        .collect();
                    r.apply(Input::Redrive);
                    // (A workflow that failed with every batch done relinks instead.)
                    if was_failed && !missing.is_empty() {
                        let m = r.wf.managed.as_ref().unwrap();
                        prop_assert_eq!(&m.steps, &missing, "a redrive submits exactly the missing batches");
                    }
                }
            }
        }
        let ids: Vec<&String> = r.published.iter().map(|(_, id, _)| id).collect();
        let unique: BTreeSet<&String> = ids.iter().copied().collect();
        prop_assert_eq!(ids.len(), unique.len(), "an event id published twice: {:?}", ids);
        let succeeded_events = r
            .published
            .iter()
            .filter(|(k, ..)| *k == HealthKind::BatchSucceeded)
            .count();
        prop_assert_eq!(succeeded_events, r.succeeded.len());
        for (k, _, command) in &r.published {
            if *k == HealthKind::WorkflowFailed {
                prop_assert_eq!(command.as_deref(), Some("flowpilot workflow redrive acme"));
            }
        }
    }
}
