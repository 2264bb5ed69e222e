//! `Input::Applied`: the shell executed outbox effects and reports what they returned.
//!
//! An outcome counts only while its effect is still in the outbox: a second delivery of the
//! same outcome (crash after the shell executed but before it acked) finds the key gone and
//! changes nothing. Failures here are permanent ones only: a transient failure never leaves
//! the outbox (`effect::outcome_of`), the next drain runs the effect again.

use super::Ctx;
use super::{bulk, live, managed, records, retire};
use crate::effect::{AttemptStep, EffectKey, LiveStep, ManagedStep, Outcome, PermanentError};
use crate::ids::FlowRole;
use crate::model::{BatchStatus, ErrorInfo, WorkflowStatus};

pub(super) fn applied(cx: &mut Ctx, outcomes: Vec<Outcome>) {
    for outcome in outcomes {
        let Some(pos) = cx.wf.outbox.iter().position(|e| &e.key == outcome.key()) else {
            continue;
        };
        let effect = cx.wf.outbox.remove(pos);
        // The effect the outbox was stuck on has run (or failed for good): unstuck.
        if cx
            .wf
            .drain
            .as_ref()
            .is_some_and(|d| &d.key == outcome.key())
        {
            cx.wf.drain = None;
        }
        if let Outcome::ManagedCreated {
            generation,
            workflow_id,
            ..
        } = outcome
        {
            // Before the cancelled check: a workflow created after a cancel must be deleted.
            managed::created(cx, generation, workflow_id);
            continue;
        }
        if cx.wf.status == WorkflowStatus::Cancelled {
            continue;
        }
        match outcome {
            Outcome::Done { .. } => {}
            Outcome::Started {
                role: FlowRole::Batch(i),
                attempt,
                execution_id: Some(id),
                ..
            } => {
                started(cx, i, attempt, id);
            }
            Outcome::Started { .. } => {}
            Outcome::Linked {
                generation, uri, ..
            } => live::linked(cx, generation, uri),
            // AppFlow's message about a settled run's record failures (`records`).
            Outcome::Described {
                key:
                    EffectKey::Attempt {
                        batch,
                        attempt,
                        step: AttemptStep::Details,
                    },
                run,
                ..
            } => records::batch_details(cx, batch, attempt, run.as_ref()),
            Outcome::Described {
                key:
                    EffectKey::Live {
                        generation,
                        step: LiveStep::Details { run: n },
                    },
                run,
                ..
            } => records::live_details(cx, generation, n, run.as_ref()),
            Outcome::Described {
                role: FlowRole::Batch(i),
                attempt,
                run: Some(run),
                ..
            } => {
                let current = cx
                    .batch_index(i)
                    .is_some_and(|idx| cx.wf.batches[idx].attempt == attempt);
                if current {
                    bulk::run_ended(cx, i, &run);
                }
            }
            Outcome::Described {
                role: FlowRole::Live,
                run: Some(run),
                ..
            } => live::run_ended(cx, &run),
            Outcome::Described { .. } => {}
            Outcome::Runs {
                key:
                    EffectKey::Live {
                        generation,
                        step: LiveStep::Runs { .. },
                    },
                runs,
            } => retire::described(cx, generation, runs),
            Outcome::Runs { .. } => {}
            Outcome::SlotDenied {
                key:
                    EffectKey::Attempt {
                        batch,
                        step: AttemptStep::Start,
                        ..
                    },
                attempt,
                denial,
            } => super::slot::denied(cx, batch, attempt, denial),
            Outcome::SlotDenied {
                key:
                    EffectKey::Attempt {
                        batch,
                        step: AttemptStep::Create,
                        ..
                    },
                attempt,
                denial,
            } => super::slot::flow_denied(cx, batch, attempt, denial),
            Outcome::SlotDenied { .. } => {}
            Outcome::ManagedCreated { .. } => {}
            Outcome::ManagedSeen {
                generation, view, ..
            } => managed::seen(cx, generation, view),
            Outcome::ManagedIntegration {
                generation, uri, ..
            } => managed::found(cx, generation, uri),
            Outcome::Failed { error, .. } => failed(cx, &effect.key, &error),
        }
    }
}

fn started(cx: &mut Ctx, index: u32, attempt: u32, id: String) {
    let Some(idx) = cx.batch_index(index) else {
        return;
    };
    let b = &mut cx.wf.batches[idx];
    if b.attempt == attempt && b.status == BatchStatus::Running && b.execution_id.is_none() {
        b.execution_id = Some(id);
        b.slot_wait = None;
    } else if b.execution_id.as_ref() != Some(&id) && !b.past_execution_ids.contains(&id) {
        // An older attempt's run (its report may already have been counted): remember it so
        // its duplicates never count for a later attempt.
        b.past_execution_ids.push(id);
    }
}

fn failed(cx: &mut Ctx, key: &EffectKey, error: &PermanentError) {
    match *key {
        // Creating the live flow is the first half of linking: its failure is the link's.
        EffectKey::Live {
            generation,
            step: LiveStep::Create | LiveStep::Put,
        } => live::link_failed(cx, generation, error),
        EffectKey::Live {
            generation,
            step: LiveStep::Start,
        } => live::start_failed(cx, generation, error),
        EffectKey::Live {
            generation,
            step: LiveStep::Runs { .. },
        } => retire::describe_failed(cx, generation, error),
        // AppFlow's message cannot be had: report the record failures without it.
        EffectKey::Attempt {
            batch,
            attempt,
            step: AttemptStep::Details,
        } => records::batch_details(cx, batch, attempt, None),
        EffectKey::Live {
            generation,
            step: LiveStep::Details { run },
        } => records::live_details(cx, generation, run, None),
        EffectKey::Attempt {
            batch,
            attempt,
            step: step @ (AttemptStep::Create | AttemptStep::Start),
        } => {
            let Some(idx) = cx.batch_index(batch) else {
                return;
            };
            if step == AttemptStep::Create {
                // The flow does not exist: the batch's next start must create it (and, should
                // it fail again, report that) rather than start a flow that is not there.
                cx.wf.batches[idx].flow_ready = false;
            }
            let b = &cx.wf.batches[idx];
            if b.attempt != attempt || b.status != BatchStatus::Running {
                return; // a flow created ahead of its batch's turn, or an older attempt
            }
            let op = if step == AttemptStep::Create {
                "CreateFlow"
            } else {
                "StartFlow"
            };
            let message = describe_failure(cx, op, batch, error);
            // An expired connection (ConnectorAuthenticationException) or a spent SaaS
            // allowance keeps its own verdict; anything else the shell judged permanent.
            let verdict = live::effect_verdict(error);
            bulk::failed(cx, idx, ErrorInfo::judged(message, verdict));
        }
        EffectKey::Managed {
            generation,
            step: ManagedStep::Create,
        } => managed::create_failed(cx, generation, error),
        // Nothing in the workflow waits on a publish, delete, stop, cancel, describe or
        // schedule: their permanent failures are logged by the shell, and the reconciler
        // describes, restarts and cancels again on its own schedule (a retiring flow whose
        // StopFlow failed is still asked about and, past the maximum run duration, cancelled).
        _ => {}
    }
}

/// The AWS error plus what the operator should do about it.
fn describe_failure(cx: &Ctx, op: &str, index: u32, e: &PermanentError) -> String {
    let spec = &cx.wf.spec;
    let redrive = cx.redrive_command();
    let hint = match e.code.as_str() {
        "ResourceNotFoundException" => format!(
            "connector profile `{}` (or domain `{}` / object type `{}`) not found: create it in \
             AppFlow / Customer Profiles or pass --connector-profile, then `{redrive}`",
            spec.connector_profile, spec.domain, spec.object_type
        ),
        "ConnectorAuthenticationException" => format!(
            "re-authorise connector profile `{}` in AppFlow, then `{redrive}`",
            spec.connector_profile
        ),
        "AccessDeniedException" => {
            format!(
                "grant flowpilot's role the AppFlow (and KMS) permissions it lacks, then `{redrive}`"
            )
        }
        "ValidationException" => format!(
            "AppFlow rejected the flow definition: check the object, --fields and --timestamp-field, then `{redrive}`"
        ),
        "ServiceQuotaExceededException" => {
            format!(
                "an AppFlow quota was reached: delete unused flows or request an increase, then `{redrive}`"
            )
        }
        _ => format!("fix the cause, then `{redrive}`"),
    };
    format!("{op} for batch {index}: {}: {} ({hint})", e.code, e.message)
}
