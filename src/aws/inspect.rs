//! Read-only AppFlow calls for `flowpilot workflow diagnose` (the "flow details" view): what
//! DescribeFlow, DescribeFlowExecutionRecords and DescribeConnectorProfiles say about a
//! workflow's flows and its connector profile. The operator role may make them
//! (`OperatorPolicy`, README "IAM"); nothing here changes anything.

use aws_sdk_appflow::Client;
use aws_sdk_appflow::types::ExecutionRecord;
use chrono::{DateTime, Utc};
use flowpilot_core::effect::EffectError;

use super::appflow::to_chrono;
use super::{effect_error, error_code};

/// Page size of DescribeFlowExecutionRecords (the API maximum).
const PAGE_SIZE: i32 = 100;
/// Pages read looking for a workflow's runs (100 000 runs: a flow scheduled every hour for
/// eleven years); beyond that the runs not found are reported as not found.
const MAX_PAGES: usize = 1000;

/// DescribeFlow, as far as a diagnosis needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowDetails {
    /// `Active`, `Suspended`, `Errored`, `Draft`, `Deleted`…
    pub status: Option<String>,
    /// `lastRunExecutionDetails`: the status, message and time of the most recent run.
    pub last_run_status: Option<String>,
    pub last_run_message: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// One DescribeFlowExecutionRecords entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Execution {
    pub execution_id: String,
    /// `InProgress`, `Successful`, `Error`, `CancelStarted`, `Canceled`.
    pub status: Option<String>,
    /// `executionResult.errorInfo.executionMessage`: a failed run's error, or a successful
    /// run's record failures' message.
    pub message: Option<String>,
    /// `executionResult.errorInfo.putFailuresCount`.
    pub put_failures: Option<u64>,
    pub records_processed: Option<u64>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// DescribeConnectorProfiles for one profile. AppFlow's `ConnectorProfile` has no member that
/// says its credentials expired: a client learns that from failed runs and
/// ConnectorAuthenticationException; `last_updated_at` says when it was last reconnected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileDetails {
    pub name: String,
    pub connector_type: Option<String>,
    pub connection_mode: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct Inspector {
    client: Client,
}

impl Inspector {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// DescribeFlow; `None` when the flow does not exist (a succeeded batch's flow is deleted).
    pub async fn flow(&self, name: &str) -> Result<Option<FlowDetails>, EffectError> {
        let out = match self.client.describe_flow().flow_name(name).send().await {
            Ok(out) => out,
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(effect_error(&e)),
        };
        let last = out.last_run_execution_details();
        Ok(Some(FlowDetails {
            status: out.flow_status().map(|s| s.as_str().to_owned()),
            last_run_status: last
                .and_then(|l| l.most_recent_execution_status())
                .map(|s| s.as_str().to_owned()),
            last_run_message: last
                .and_then(|l| l.most_recent_execution_message())
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
            last_run_at: last
                .and_then(|l| l.most_recent_execution_time())
                .and_then(to_chrono),
        }))
    }

    /// The execution records of `flow` whose ids are in `ids`, reading every page (AppFlow
    /// lists them in no time order), oldest first. A flow that does not exist has none.
    pub async fn executions(
        &self,
        flow: &str,
        ids: &[String],
    ) -> Result<Vec<Execution>, EffectError> {
        let mut found = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = match self
                .client
                .describe_flow_execution_records()
                .flow_name(flow)
                .max_results(PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if error_code(&e) == Some("ResourceNotFoundException") => break,
                Err(e) => return Err(effect_error(&e)),
            };
            found.extend(
                out.flow_executions()
                    .iter()
                    .filter(|r| {
                        r.execution_id()
                            .is_some_and(|id| ids.iter().any(|x| x == id))
                    })
                    .map(execution),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() && found.len() < ids.len() => {
                    next_token = Some(t.to_owned());
                }
                _ => break,
            }
        }
        found.sort_by_key(|e| e.started_at);
        Ok(found)
    }

    /// DescribeConnectorProfiles for `name`; `None` if AppFlow has no such profile.
    pub async fn profile(&self, name: &str) -> Result<Option<ProfileDetails>, EffectError> {
        let out = self
            .client
            .describe_connector_profiles()
            .connector_profile_names(name)
            .send()
            .await
            .map_err(|e| effect_error(&e))?;
        Ok(out
            .connector_profile_details()
            .iter()
            .find(|p| p.connector_profile_name() == Some(name))
            .map(|p| ProfileDetails {
                name: name.to_owned(),
                connector_type: p.connector_type().map(|t| t.as_str().to_owned()),
                connection_mode: p.connection_mode().map(|m| m.as_str().to_owned()),
                created_at: p.created_at().and_then(to_chrono),
                last_updated_at: p.last_updated_at().and_then(to_chrono),
            }))
    }
}

fn execution(r: &ExecutionRecord) -> Execution {
    let result = r.execution_result();
    let info = result.and_then(|x| x.error_info());
    Execution {
        execution_id: r.execution_id().unwrap_or_default().to_owned(),
        status: r.execution_status().map(|s| s.as_str().to_owned()),
        message: info
            .and_then(|i| i.execution_message())
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        put_failures: info
            .and_then(|i| i.put_failures_count())
            .and_then(|n| u64::try_from(n).ok()),
        records_processed: result
            .and_then(|x| x.records_processed())
            .and_then(|n| u64::try_from(n).ok()),
        started_at: r.started_at().and_then(to_chrono),
        updated_at: r.last_updated_at().and_then(to_chrono),
    }
}
