//! The shared budget's side of executing effects: run and flow slots asked before StartFlow
//! and CreateFlow, given back after DeleteFlow, and AppFlow's quota refusals turned into a
//! lowered limit and a refusal `decide` makes the batch wait on (`crate::budget`).

use std::collections::HashMap;

use flowpilot_core::effect::{
    AttemptStep, EffectError, EffectKey, FlowDefinition, Outcome, SlotDenial, Step,
};
use flowpilot_core::model::{BatchStatus, Workflow};

use super::AwsShell;
use crate::budget::{BudgetError, FLOWS_SCOPE, Slot, holder};
use crate::metrics;

/// AppFlow's answer when a quota (flows, concurrent runs) would be exceeded.
pub(super) const QUOTA_EXCEEDED: &str = "ServiceQuotaExceededException";

/// What one execution of an outbox remembers between its effects.
#[derive(Default)]
pub(super) struct Scratch {
    /// Flow ARNs that CreateFlow answered earlier in this execution, so linking the live flow
    /// right after creating it needs no DescribeFlow.
    pub(super) arns: HashMap<String, String>,
    /// Batches whose CreateFlow was refused in this execution: their StartFlow is refused the
    /// same way instead of starting a flow that does not exist.
    pub(super) refused: HashMap<u32, SlotDenial>,
}

/// The AppFlow call refused for a quota: which limit it lowers, and its metric label.
#[derive(Clone, Copy)]
pub(super) enum Refused {
    CreateFlow,
    StartFlow,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Self::CreateFlow => "create_flow",
            Self::StartFlow => "start_flow",
        }
    }

    /// The scope named when no flowpilot limit was there to lower.
    fn scope(self) -> &'static str {
        match self {
            Self::CreateFlow => FLOWS_SCOPE,
            Self::StartFlow => "account",
        }
    }
}

fn slot_metric_limit(scope: &str) -> &'static str {
    if scope == "account" {
        "account"
    } else if scope == FLOWS_SCOPE {
        "flows"
    } else {
        "profile"
    }
}

fn budget_unavailable(e: &crate::budget::BudgetError) -> EffectError {
    // A budget that cannot be read is a transient failure: the effect stays in the outbox
    // and is asked about again, never executed without a slot.
    EffectError {
        code: "RunBudgetUnavailable".into(),
        message: e.to_string(),
        permanent: false,
    }
}

impl AwsShell {
    /// Asks the flow limit for batch `index`'s flow before its CreateFlow (granted when off).
    async fn flow_slot(
        &self,
        wf: &Workflow,
        flow: &str,
        index: u32,
        attempt: u32,
    ) -> Result<Slot, EffectError> {
        let Some(budget) = &self.budget else {
            return Ok(Slot::Granted);
        };
        // A flow created ahead is for a batch still pending; its own turn asks again.
        let ahead = wf
            .batches
            .iter()
            .any(|b| b.index == index && b.status == BatchStatus::Pending);
        let asked = budget.acquire_flow(flow, attempt, ahead).await;
        self.count_slot(&asked, "flows");
        if let Ok(Slot::Denied(d)) = &asked {
            tracing::info!(
                batch = index,
                in_use = d.in_use,
                limit = d.limit,
                "waiting for a flow slot"
            );
        }
        asked.map_err(|e| budget_unavailable(&e))
    }

    /// AppFlow refused a CreateFlow or StartFlow (`operation`) for a quota: lowers the
    /// budget's limit and says so. Returns the denial a batch waits on, or the transient error
    /// that keeps the effect in the outbox when the budget could not be written.
    pub(super) async fn quota_refused(
        &self,
        wf: &Workflow,
        operation: Refused,
        flow: &str,
        batch: Option<(u32, u32)>,
        error: &EffectError,
    ) -> Result<SlotDenial, EffectError> {
        let lowered = match &self.budget {
            None => Ok(None),
            Some(b) if matches!(operation, Refused::CreateFlow) => {
                b.shrink_flows(flow, batch.map_or(0, |(_, attempt)| attempt))
                    .await
            }
            Some(b) => match batch {
                Some((i, attempt)) => {
                    b.shrink_runs(
                        &wf.spec.connector_profile,
                        &holder(wf.id.as_str(), i),
                        attempt,
                    )
                    .await
                }
                None => Ok(None),
            },
        };
        let denial = lowered
            .map_err(|e| budget_unavailable(&e))?
            .unwrap_or_else(|| SlotDenial {
                scope: operation.scope().into(),
                in_use: 0,
                limit: 0,
                quota: true,
            });
        let limit = if denial.limit == 0 {
            "none"
        } else {
            slot_metric_limit(&denial.scope)
        };
        self.metrics.inc_with(
            metrics::QUOTA_REFUSALS,
            &[("operation", operation.label()), ("limit", limit)],
        );
        tracing::warn!(
            workflow = %wf.id, batch = batch.map(|(i, _)| i), flow, scope = %denial.scope, in_use = denial.in_use,
            lowered_to = denial.limit, error = %error.message,
            "AppFlow refused: quota; effective limit lowered to {} (0: that limit is off, nothing to lower)",
            denial.limit
        );
        Ok(denial)
    }

    /// Asks the shared run budget for batch `index`'s slot (granted when the budget is off).
    pub(super) async fn slot(
        &self,
        wf: &Workflow,
        index: u32,
        attempt: u32,
    ) -> Result<Slot, EffectError> {
        let Some(budget) = &self.budget else {
            return Ok(Slot::Granted);
        };
        let asked = budget
            .acquire(
                &wf.spec.connector_profile,
                &holder(wf.id.as_str(), index),
                attempt,
            )
            .await;
        self.count_slot(&asked, "");
        if let Ok(Slot::Denied(d)) = &asked {
            tracing::info!(batch = index, scope = %d.scope, in_use = d.in_use, limit = d.limit, "waiting for a run slot");
        }
        asked.map_err(|e| budget_unavailable(&e))
    }

    /// Counts an answer of the budget in `flowpilot_run_slots_total`: a refusal under the
    /// limit that refused, a grant or an error under `limit` (`""` for the run limits).
    fn count_slot(&self, asked: &Result<Slot, BudgetError>, limit: &'static str) {
        let (result, limit) = match asked {
            Ok(Slot::Granted) => ("granted", limit),
            Ok(Slot::Denied(d)) => ("denied", slot_metric_limit(&d.scope)),
            Err(_) => ("error", limit),
        };
        self.metrics
            .inc_with(metrics::RUN_SLOTS, &[("result", result), ("limit", limit)]);
    }

    /// CreateFlow, with the flow limit asked first: a batch flow refused a slot waits like a
    /// batch refused a run slot, a live flow's CreateFlow stays in the outbox. AppFlow's quota refusal lowers the limit; for a
    /// batch the refusal is a slot refusal, for the live flow a transient failure (linking
    /// tries again on the next drain, once batch flows are deleted).
    pub(super) async fn create_flow(
        &self,
        wf: &Workflow,
        key: &EffectKey,
        flow: &FlowDefinition,
        scratch: &mut Scratch,
    ) -> Vec<Step> {
        let batch = match key {
            EffectKey::Attempt {
                batch,
                attempt,
                step: AttemptStep::Create,
            } => Some((*batch, *attempt)),
            _ => None,
        };
        match (batch, &self.budget) {
            (Some((i, attempt)), _) => match self.flow_slot(wf, &flow.name, i, attempt).await {
                Ok(Slot::Granted) => {}
                Ok(Slot::Denied(denial)) => {
                    scratch.refused.insert(i, denial.clone());
                    return vec![Step::Record(Outcome::SlotDenied {
                        key: key.clone(),
                        attempt,
                        denial,
                    })];
                }
                Err(e) => return vec![Step::Stop(e)],
            },
            (None, Some(budget)) => {
                let asked = budget.acquire_live_flow(&flow.name).await;
                self.count_slot(&asked, "flows");
                match asked {
                    Ok(Slot::Granted) => {}
                    Ok(Slot::Denied(d)) => {
                        // The link waits in the outbox; the next drain asks again.
                        return vec![Step::Stop(EffectError {
                            code: "FlowLimitReached".into(),
                            message: format!(
                                "waiting for a flow slot for live flow {}: {}/{} in use",
                                flow.name, d.in_use, d.limit
                            ),
                            permanent: false,
                        })];
                    }
                    Err(e) => return vec![Step::Stop(budget_unavailable(&e))],
                }
            }
            (None, None) => {}
        }
        let r = self.appflow.create_flow(flow).await;
        if let Ok(Some(arn)) = &r {
            scratch.arns.insert(flow.name.clone(), arn.clone());
        }
        if let Err(e) = &r
            && e.code == QUOTA_EXCEEDED
        {
            self.record("create_flow", false);
            let refused = self
                .quota_refused(wf, Refused::CreateFlow, &flow.name, batch, e)
                .await;
            let step = match (refused, batch) {
                (Ok(denial), Some((i, attempt))) => {
                    scratch.refused.insert(i, denial.clone());
                    Step::Record(Outcome::SlotDenied {
                        key: key.clone(),
                        attempt,
                        denial,
                    })
                }
                (Ok(_), None) => Step::Stop(EffectError {
                    permanent: false,
                    ..e.clone()
                }),
                (Err(e), _) => Step::Stop(e),
            };
            return vec![step];
        }
        vec![self.step("create_flow", key, r, |_| Outcome::Done {
            key: key.clone(),
        })]
    }

    /// Gives a deleted flow's slot back. Failing, the DeleteFlow that deleted it stays in the
    /// outbox and is repeated (AppFlow answers NotFound, which counts as deleted), so even a
    /// live flow's lease, which never expires, comes back (see `crate::budget`).
    pub(super) async fn release_flow(&self, flow: &str) -> Result<(), EffectError> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let r = budget.release_flow(flow).await;
        let result = if r.is_ok() { "ok" } else { "error" };
        self.metrics
            .inc_with(metrics::RUN_SLOT_RELEASES, &[("result", result)]);
        r.map_err(|e| {
            tracing::warn!(flow, error = %e, "flow slot not released yet; the DeleteFlow will be repeated");
            budget_unavailable(&e)
        })
    }
}
