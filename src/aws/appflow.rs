//! Amazon AppFlow adapter: the flow lifecycle calls the effects need, each idempotent.

use aws_sdk_appflow::Client;
use aws_sdk_appflow::types::{
    ConnectorType, CustomerProfilesDestinationProperties, DataPullMode,
    DestinationConnectorProperties, DestinationFlowConfig, ExecutionRecord, ExecutionStatus,
    ScheduledTriggerProperties, TriggerConfig, TriggerProperties, TriggerType,
};
use chrono::{DateTime, Utc};
use flowpilot_core::effect::{EffectError, FlowDefinition, Trigger};
use flowpilot_core::ids::FlowRole;
use flowpilot_core::input::{ActiveRun, FlowRuns, RunReport};

use super::flow_parts::{source_flow_config, task};
use super::tasks;
use super::{build_error, effect_error, error_code};

/// Page size of DescribeFlowExecutionRecords (the API maximum).
const DESCRIBE_PAGE_SIZE: i32 = 100;
/// Pages read before giving up on finding an execution id (10 000 runs of one flow).
const DESCRIBE_MAX_PAGES: usize = 100;
/// Pages read to learn whether any run of a flow is in progress (100 000 runs: a flow scheduled
/// every hour for eleven years). Beyond it nothing can be said for sure (an error).
const RUNS_MAX_PAGES: usize = 1000;

#[derive(Clone, Debug)]
pub struct AppFlow {
    client: Client,
}

impl AppFlow {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// CreateFlow. `ConflictException` means a flow with our deterministic name already
    /// exists, i.e. an earlier attempt of this very effect created it: success. Returns the
    /// flow's ARN when AppFlow answered with it (not on a conflict).
    pub async fn create_flow(&self, flow: &FlowDefinition) -> Result<Option<String>, EffectError> {
        let mut req = self
            .client
            .create_flow()
            .flow_name(&flow.name)
            .description(&flow.description)
            .client_token(&flow.client_token)
            .trigger_config(trigger_config(&flow.trigger)?)
            .source_flow_config(source_flow_config(flow)?)
            .destination_flow_config_list(destination(flow)?)
            .set_tasks(Some(
                tasks::tasks(flow)
                    .iter()
                    .map(|t| task(flow.connector, t))
                    .collect::<Result<Vec<_>, _>>()?,
            ))
            .set_kms_arn(flow.kms_arn.clone());
        for (k, v) in &flow.tags {
            req = req.tags(k, v);
        }
        match req.send().await {
            Ok(out) => Ok(out.flow_arn),
            Err(e) if error_code(&e) == Some("ConflictException") => Ok(None),
            Err(e) => Err(effect_error(&e)),
        }
    }

    /// The ARN of an existing flow (DescribeFlow), for linking a flow created by an earlier
    /// attempt whose CreateFlow answer this process did not see.
    pub async fn flow_arn(&self, flow_name: &str) -> Result<String, EffectError> {
        let out = self
            .client
            .describe_flow()
            .flow_name(flow_name)
            .send()
            .await
            .map_err(|e| effect_error(&e))?;
        out.flow_arn.ok_or_else(|| EffectError {
            code: "InvalidResponse".to_owned(),
            message: format!("DescribeFlow for `{flow_name}` answered without a flowArn"),
            permanent: false,
        })
    }

    /// StartFlow with the effect's client token: the same token never launches a second run.
    /// Returns the execution id (None for scheduled flows, whose start only activates them).
    pub async fn start_flow(
        &self,
        flow_name: &str,
        client_token: &str,
    ) -> Result<Option<String>, EffectError> {
        let out = self
            .client
            .start_flow()
            .flow_name(flow_name)
            .client_token(client_token)
            .send()
            .await
            .map_err(|e| effect_error(&e))?;
        Ok(out.execution_id)
    }

    /// DeleteFlow (forced, so a stuck run does not keep the flow alive). Not found: already gone.
    pub async fn delete_flow(&self, flow_name: &str) -> Result<(), EffectError> {
        match self
            .client
            .delete_flow()
            .flow_name(flow_name)
            .force_delete(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(effect_error(&e)),
        }
    }

    /// CancelFlowExecutions for one run. Runs that already ended come back as invalid
    /// executions, which is fine: there is nothing left to cancel. A deleted flow likewise.
    pub async fn cancel_run(&self, flow_name: &str, execution_id: &str) -> Result<(), EffectError> {
        match self
            .client
            .cancel_flow_executions()
            .flow_name(flow_name)
            .execution_ids(execution_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(effect_error(&e)),
        }
    }

    /// StopFlow: a scheduled flow starts no further run; runs in progress continue (wire facts
    /// §2.5). Not found: already gone, nothing to stop.
    pub async fn stop_flow(&self, flow_name: &str) -> Result<(), EffectError> {
        match self.client.stop_flow().flow_name(flow_name).send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(effect_error(&e)),
        }
    }

    /// Every run of a flow in DescribeFlowExecutionRecords (every page, no ordering assumption):
    /// the ones still in progress, and the successful one whose pull reached furthest. A flow
    /// that does not exist has no runs.
    pub async fn describe_runs(&self, flow_name: &str) -> Result<FlowRuns, EffectError> {
        let mut runs = FlowRuns::default();
        let mut next_token: Option<String> = None;
        for _ in 0..RUNS_MAX_PAGES {
            let out = match self
                .client
                .describe_flow_execution_records()
                .flow_name(flow_name)
                .max_results(DESCRIBE_PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
                    return Ok(FlowRuns::default());
                }
                Err(e) => return Err(effect_error(&e)),
            };
            for record in out.flow_executions() {
                add_run(&mut runs, flow_name, record);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => return Ok(runs),
            }
        }
        Err(EffectError {
            code: "TooManyExecutionRecords".to_owned(),
            message: format!(
                "`{flow_name}` has more than {} execution records: cannot tell whether one is \
                 still in progress",
                RUNS_MAX_PAGES * DESCRIBE_PAGE_SIZE as usize
            ),
            permanent: true,
        })
    }

    /// Finds a run in DescribeFlowExecutionRecords (every page, no ordering assumption) and
    /// reports it if it has ended. With no execution id (StartFlow's answer was lost), the most
    /// recently started run stands in. `Ok(None)`: still running, or not found.
    pub async fn describe_run(
        &self,
        flow_name: &str,
        role: FlowRole,
        execution_id: Option<&str>,
    ) -> Result<Option<RunReport>, EffectError> {
        let mut next_token: Option<String> = None;
        let mut latest: Option<ExecutionRecord> = None;
        for _ in 0..DESCRIBE_MAX_PAGES {
            let out = match self
                .client
                .describe_flow_execution_records()
                .flow_name(flow_name)
                .max_results(DESCRIBE_PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
            {
                Ok(out) => out,
                // The flow is gone: nothing to report (decide handles missing runs via reconcile).
                Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
                Err(e) => return Err(effect_error(&e)),
            };
            for record in out.flow_executions() {
                match execution_id {
                    Some(id) if record.execution_id() == Some(id) => {
                        return Ok(report(flow_name, role, record));
                    }
                    Some(_) => {}
                    None => {
                        let newer = match (&latest, record.started_at()) {
                            (None, _) => true,
                            (Some(l), Some(s)) => l.started_at().is_none_or(|ls| s > ls),
                            (Some(_), None) => false,
                        };
                        if newer {
                            latest = Some(record.clone());
                        }
                    }
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(latest.and_then(|r| report(flow_name, role, &r)))
    }
}

/// Adds one execution record to what [`AppFlow::describe_runs`] reports. A status this code
/// does not know counts as in progress: waiting on it is bounded (the rebuild cancels runs past
/// the maximum run duration), deleting a flow that still writes is not undone.
fn add_run(runs: &mut FlowRuns, flow_name: &str, record: &ExecutionRecord) {
    match record.execution_status() {
        Some(ExecutionStatus::Successful) => {
            let Some(r) = report(flow_name, FlowRole::Live, record) else {
                return;
            };
            let further = match (&runs.furthest_success, r.pull_end) {
                (None, _) => true,
                (Some(best), Some(end)) => best.pull_end.is_none_or(|b| end > b),
                (Some(_), None) => false,
            };
            if further {
                runs.furthest_success = Some(r);
            }
        }
        Some(ExecutionStatus::Error | ExecutionStatus::Canceled) => {}
        _ => runs.in_progress.push(ActiveRun {
            execution_id: record.execution_id().unwrap_or_default().to_owned(),
            started_at: record.started_at().and_then(to_chrono),
        }),
    }
}

/// A finished execution record as a [`RunReport`]; `None` while it is still running.
fn report(flow_name: &str, role: FlowRole, record: &ExecutionRecord) -> Option<RunReport> {
    let succeeded = match record.execution_status()? {
        ExecutionStatus::Successful => true,
        ExecutionStatus::Error | ExecutionStatus::Canceled => false,
        _ => return None,
    };
    let result = record.execution_result();
    let error_info = result.and_then(|r| r.error_info());
    let error = if succeeded {
        None
    } else {
        Some(
            error_info
                .and_then(|e| e.execution_message())
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    if matches!(record.execution_status(), Some(ExecutionStatus::Canceled)) {
                        "run was cancelled".to_owned()
                    } else {
                        "run failed without an error message".to_owned()
                    }
                }),
        )
    };
    Some(RunReport {
        flow_name: flow_name.to_owned(),
        role,
        execution_id: record.execution_id().map(str::to_owned),
        succeeded,
        error,
        records_processed: result
            .and_then(|r| r.records_processed())
            .and_then(|n| u64::try_from(n).ok()),
        record_failures: error_info
            .and_then(|e| e.put_failures_count())
            .and_then(|n| u64::try_from(n).ok()),
        // On a successful run, errorInfo is about records that were not written: its message
        // is the only place AppFlow says why (the End report carries the count only).
        record_failure_message: if succeeded {
            error_info
                .and_then(|e| e.execution_message())
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
        } else {
            None
        },
        pull_start: record.data_pull_start_time().and_then(to_chrono),
        pull_end: record.data_pull_end_time().and_then(to_chrono),
        ended_at: record.last_updated_at().and_then(to_chrono),
    })
}

pub(crate) fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

pub(crate) fn to_smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

fn trigger_config(trigger: &Trigger) -> Result<TriggerConfig, EffectError> {
    match trigger {
        Trigger::OnDemand => TriggerConfig::builder()
            .trigger_type(TriggerType::Ondemand)
            .build()
            .map_err(build_error),
        Trigger::Scheduled {
            expression,
            first_execution_from,
            deactivation_threshold,
        } => {
            let scheduled = ScheduledTriggerProperties::builder()
                .schedule_expression(expression)
                .data_pull_mode(DataPullMode::Incremental)
                .first_execution_from(to_smithy(*first_execution_from))
                .flow_error_deactivation_threshold(
                    i32::try_from(*deactivation_threshold).unwrap_or(i32::MAX),
                )
                .build()
                .map_err(build_error)?;
            TriggerConfig::builder()
                .trigger_type(TriggerType::Scheduled)
                .trigger_properties(TriggerProperties::builder().scheduled(scheduled).build())
                .build()
                .map_err(build_error)
        }
    }
}

fn destination(flow: &FlowDefinition) -> Result<DestinationFlowConfig, EffectError> {
    let cp = CustomerProfilesDestinationProperties::builder()
        .domain_name(&flow.domain)
        .object_type_name(&flow.object_type)
        .build()
        .map_err(build_error)?;
    DestinationFlowConfig::builder()
        .connector_type(ConnectorType::Customerprofiles)
        .destination_connector_properties(
            DestinationConnectorProperties::builder()
                .customer_profiles(cp)
                .build(),
        )
        .build()
        .map_err(build_error)
}
