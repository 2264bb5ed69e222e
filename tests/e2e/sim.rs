//! The AppFlow + Customer Profiles simulator, driven through the real `aws-sdk-appflow` and
//! `aws-sdk-customerprofiles` clients: wire conformance (operations and modelled errors),
//! idempotency, runs and the ledger, scheduled flows, faults, the end-to-end path
//! AppFlow run report → EventBridge (moto) → SQS, and IAM ([`iam`]). IAM is enforced
//! in every simulator here: the clients sign as an administrator unless a test assumes a role.

/// IAM: restricted roles through STS, the SQS / DynamoDB / EventBridge front, trust policies.
mod iam;
/// AppFlow quotas: account concurrent runs, flow count.
mod quota;
/// Customer Profiles' managed workflow API.
mod workflows;

use std::future::Future;
use std::time::Duration;

use crate::support::chaos::failing_runs;
use crate::support::poll_until;
use anyhow::{Context as _, ensure};
use aws_sdk_appflow::error::ProvideErrorMetadata;
use aws_sdk_appflow::operation::create_flow::builders::CreateFlowFluentBuilder;
use aws_sdk_appflow::types as af;
use aws_sdk_customerprofiles::types as cp;
use aws_smithy_runtime_api::client::result::{CreateUnhandledError, SdkError};
use chrono::{TimeZone, Utc};
use flowpilot::core::event::Message;
use flowpilot::core::ids::FlowRole;
use flowpilot::core::input::Input;
use flowpilot_sim::{FaultPlan, RunFailure, SimConfig, SimHandle};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const PROFILE: &str = "sf-prod";
const DOMAIN: &str = "acme";
/// The administrator of every simulator here (IAM is enforced; `Allow *` on `*`).
const ADMIN_KEY: &str = "AKIAFLOWPILOTADMIN01";

struct Env {
    appflow: aws_sdk_appflow::Client,
    profiles: aws_sdk_customerprofiles::Client,
    http: reqwest::Client,
    sim: SimHandle,
}

fn quiet_config() -> SimConfig {
    let mut c = SimConfig::default();
    c.iam.identities = Some(crate::support::admin_identities(ADMIN_KEY));
    c.events.disabled = true;
    c.faults.run_duration_ms = flowpilot_sim::DurationRange { min: 20, max: 60 };
    c
}

/// A simulator with `config`, holding the connector profile [`PROFILE`] and domain [`DOMAIN`].
async fn env_with(config: SimConfig) -> anyhow::Result<Env> {
    let sim = flowpilot_sim::start(config).await?;
    let sdk = admin_sdk(&sim.url()).await;
    let env = Env {
        appflow: aws_sdk_appflow::Client::new(&sdk),
        profiles: aws_sdk_customerprofiles::Client::new(&sdk),
        http: reqwest::Client::new(),
        sim,
    };
    env.profile_and_domain().await?;
    Ok(env)
}

/// SDK configuration signing as the administrator of [`quiet_config`]'s identity document.
async fn admin_sdk(url: &str) -> aws_config::SdkConfig {
    crate::support::sdk_config_with(
        url,
        crate::support::static_credentials(ADMIN_KEY, crate::support::SECRET_ACCESS_KEY),
    )
    .await
}

impl Env {
    async fn admin(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}/_sim/{path}", self.sim.url()))
            .send()
            .await?;
        ensure!(
            resp.status().is_success(),
            "GET /_sim/{path}: {}",
            resp.status()
        );
        Ok(resp.json().await?)
    }

    async fn set_faults(&self, plan: &FaultPlan) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/_sim/faults", self.sim.url()))
            .json(plan)
            .send()
            .await?;
        ensure!(
            resp.status().is_success(),
            "POST /_sim/faults: {}",
            resp.status()
        );
        Ok(())
    }

    async fn profile_and_domain(&self) -> anyhow::Result<()> {
        self.appflow
            .create_connector_profile()
            .connector_profile_name(PROFILE)
            .connector_type(af::ConnectorType::Salesforce)
            .connection_mode(af::ConnectionMode::Public)
            .connector_profile_config(
                af::ConnectorProfileConfig::builder()
                    .connector_profile_properties(
                        af::ConnectorProfileProperties::builder()
                            .salesforce(
                                af::SalesforceConnectorProfileProperties::builder()
                                    .instance_url("https://example.my.salesforce.com")
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await?;
        self.profiles
            .create_domain()
            .domain_name(DOMAIN)
            .default_expiration_days(365)
            .send()
            .await?;
        Ok(())
    }

    async fn run_status(
        &self,
        flow: &str,
        execution_id: &str,
    ) -> anyhow::Result<Option<af::ExecutionRecord>> {
        let mut token = None;
        loop {
            let out = self
                .appflow
                .describe_flow_execution_records()
                .flow_name(flow)
                .max_results(100)
                .set_next_token(token)
                .send()
                .await?;
            if let Some(r) = out
                .flow_executions()
                .iter()
                .find(|r| r.execution_id() == Some(execution_id))
            {
                return Ok(Some(r.clone()));
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(None);
            }
        }
    }

    /// Polls DescribeFlowExecutionRecords until the run leaves InProgress / CancelStarted.
    async fn finished(
        &self,
        flow: &str,
        execution_id: &str,
    ) -> anyhow::Result<af::ExecutionRecord> {
        poll_until(WAIT, || async {
            Ok(self.run_status(flow, execution_id).await?.filter(|r| {
                !matches!(
                    r.execution_status(),
                    Some(af::ExecutionStatus::Inprogress | af::ExecutionStatus::Cancelstarted)
                        | None
                )
            }))
        })
        .await
    }
}

fn ms(y: i32, m: u32, d: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .unwrap()
        .timestamp_millis()
}

fn between(lo_ms: i64, hi_ms: i64) -> af::Task {
    af::Task::builder()
        .task_type(af::TaskType::Filter)
        .source_fields("LastModifiedDate")
        .connector_operator(
            af::ConnectorOperator::builder()
                .salesforce(af::SalesforceConnectorOperator::Between)
                .build(),
        )
        .task_properties(af::OperatorPropertiesKeys::DataType, "datetime")
        .task_properties(af::OperatorPropertiesKeys::LowerBound, lo_ms.to_string())
        .task_properties(af::OperatorPropertiesKeys::UpperBound, hi_ms.to_string())
        .build()
        .unwrap()
}

fn map_all() -> af::Task {
    af::Task::builder()
        .task_type(af::TaskType::MapAll)
        .source_fields("")
        .connector_operator(
            af::ConnectorOperator::builder()
                .salesforce(af::SalesforceConnectorOperator::NoOp)
                .build(),
        )
        .build()
        .unwrap()
}

fn source(profile: &str) -> af::SourceFlowConfig {
    af::SourceFlowConfig::builder()
        .connector_type(af::ConnectorType::Salesforce)
        .connector_profile_name(profile)
        .source_connector_properties(
            af::SourceConnectorProperties::builder()
                .salesforce(
                    af::SalesforceSourceProperties::builder()
                        .object("Account")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap()
}

fn destination(object_type: &str) -> af::DestinationFlowConfig {
    af::DestinationFlowConfig::builder()
        .connector_type(af::ConnectorType::Customerprofiles)
        .destination_connector_properties(
            af::DestinationConnectorProperties::builder()
                .customer_profiles(
                    af::CustomerProfilesDestinationProperties::builder()
                        .domain_name(DOMAIN)
                        .object_type_name(object_type)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap()
}

fn on_demand() -> af::TriggerConfig {
    af::TriggerConfig::builder()
        .trigger_type(af::TriggerType::Ondemand)
        .build()
        .unwrap()
}

/// An on-demand Salesforce `Account` → `acme/Account` flow over `[lo, hi)` (BETWEEN lo-1, hi).
fn batch_flow(
    c: &aws_sdk_appflow::Client,
    name: &str,
    lo_ms: i64,
    hi_ms: i64,
) -> CreateFlowFluentBuilder {
    c.create_flow()
        .flow_name(name)
        .trigger_config(on_demand())
        .source_flow_config(source(PROFILE))
        .destination_flow_config_list(destination("Account"))
        .tasks(map_all())
        .tasks(between(lo_ms - 1, hi_ms))
}

/// The modelled error of a request that must fail (the test fails if it succeeded).
async fn service_error<O, E, R>(sent: impl Future<Output = Result<O, SdkError<E, R>>>) -> E
where
    O: std::fmt::Debug,
    E: std::error::Error + Send + Sync + CreateUnhandledError + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    sent.await.unwrap_err().into_service_error()
}

/// StartFlow of an on-demand flow; returns the run's execution id.
async fn start_run(env: &Env, flow: &str) -> anyhow::Result<String> {
    let out = env.appflow.start_flow().flow_name(flow).send().await?;
    Ok(out.execution_id().context("executionId")?.to_owned())
}

/// The ledger summary of `acme/Account`.
async fn ledger_summary(env: &Env) -> anyhow::Result<Value> {
    env.admin(&format!("ledger?domain={DOMAIN}&object_type=Account"))
        .await
}

/// The first event the simulator published (or tried to) that satisfies `pred`.
async fn find_event(env: &Env, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Option<Value>> {
    let events = env.admin("events").await?;
    Ok(events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| pred(e))
        .cloned())
}

/// Creates [`batch_flow`] `name` over `[lo, hi)`.
async fn create_batch_flow(env: &Env, name: &str, lo_ms: i64, hi_ms: i64) -> anyhow::Result<()> {
    batch_flow(&env.appflow, name, lo_ms, hi_ms).send().await?;
    Ok(())
}

async fn source_count(env: &Env, from: &str, to: &str) -> anyhow::Result<u64> {
    let v = env
        .admin(&format!(
            "source?connector_profile={PROFILE}&object=Account&from={from}&to={to}"
        ))
        .await?;
    v["records"].as_u64().context("records")
}

#[tokio::test]
async fn appflow_operations_round_trip_through_the_sdk() -> anyhow::Result<()> {
    let env = env_with(quiet_config()).await?;

    let profiles = env
        .appflow
        .describe_connector_profiles()
        .connector_profile_names(PROFILE)
        .send()
        .await?;
    let p = &profiles.connector_profile_details()[0];
    assert_eq!(p.connector_profile_name(), Some(PROFILE));
    assert_eq!(p.connector_type(), Some(&af::ConnectorType::Salesforce));

    let (lo, hi) = (ms(2024, 1, 1), ms(2024, 3, 1));
    let created = batch_flow(&env.appflow, "fp-wf1-b0000", lo, hi)
        .tags("owner", "flowpilot")
        .send()
        .await?;
    assert_eq!(
        created.flow_arn(),
        Some("arn:aws:appflow:us-east-1:123456789012:flow/fp-wf1-b0000")
    );
    assert_eq!(created.flow_status(), Some(&af::FlowStatus::Active));

    let d = env
        .appflow
        .describe_flow()
        .flow_name("fp-wf1-b0000")
        .send()
        .await?;
    assert_eq!(d.flow_name(), Some("fp-wf1-b0000"));
    assert_eq!(
        d.trigger_config().map(|t| t.trigger_type()),
        Some(&af::TriggerType::Ondemand)
    );
    let filter = d
        .tasks()
        .iter()
        .find(|t| t.task_type() == &af::TaskType::Filter)
        .context("filter task echoed")?;
    assert_eq!(
        filter
            .task_properties()
            .and_then(|p| p.get(&af::OperatorPropertiesKeys::UpperBound))
            .map(String::as_str),
        Some(hi.to_string().as_str())
    );
    assert_eq!(
        d.tags().and_then(|t| t.get("owner")).map(String::as_str),
        Some("flowpilot")
    );

    let list = env.appflow.list_flows().send().await?;
    assert_eq!(list.flows().len(), 1);
    assert_eq!(
        list.flows()[0].trigger_type(),
        Some(&af::TriggerType::Ondemand)
    );

    // Tags: URL-encoded ARN in the path, repeated tagKeys in the query.
    let arn = created.flow_arn().unwrap_or_default();
    env.appflow
        .tag_resource()
        .resource_arn(arn)
        .tags("team", "data")
        .tags("x", "y")
        .send()
        .await?;
    env.appflow
        .untag_resource()
        .resource_arn(arn)
        .tag_keys("x")
        .tag_keys("owner")
        .send()
        .await?;
    let tags = env
        .appflow
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await?;
    let mut keys: Vec<_> = tags
        .tags()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(keys, vec!["team".to_owned()]);

    // UpdateFlow re-windows the filter (the destination stays).
    let (lo, hi) = (ms(2024, 2, 1), ms(2024, 3, 1));
    let upd = env
        .appflow
        .update_flow()
        .flow_name("fp-wf1-b0000")
        .trigger_config(on_demand())
        .source_flow_config(source(PROFILE))
        .destination_flow_config_list(destination("Account"))
        .tasks(map_all())
        .tasks(between(lo - 1, hi))
        .send()
        .await?;
    assert_eq!(upd.flow_status(), Some(&af::FlowStatus::Active));

    // An on-demand run has an executionId.
    let id = start_run(&env, "fp-wf1-b0000").await?;
    let rec = env.finished("fp-wf1-b0000", &id).await?;
    assert_eq!(
        rec.execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    let expected = source_count(&env, "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z").await?;
    assert_eq!(expected, 29 * 50, "2024-02 has 29 days of 50 records");
    let result = rec.execution_result().context("executionResult")?;
    assert_eq!(result.records_processed(), Some(expected as i64));
    assert!(rec.started_at().is_some() && rec.data_pull_start_time().is_some());
    let pull_start = rec.data_pull_start_time().unwrap().to_millis()?;
    assert!(
        pull_start >= lo,
        "first record {pull_start} is inside the window from {lo}"
    );

    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(expected));
    assert_eq!(ledger["duplicate_writes"].as_u64(), Some(0));

    let d = env
        .appflow
        .describe_flow()
        .flow_name("fp-wf1-b0000")
        .send()
        .await?;
    assert_eq!(
        d.last_run_execution_details()
            .and_then(|l| l.most_recent_execution_status()),
        Some(&af::ExecutionStatus::Successful)
    );

    env.appflow
        .delete_flow()
        .flow_name("fp-wf1-b0000")
        .send()
        .await?;
    let err = service_error(env.appflow.describe_flow().flow_name("fp-wf1-b0000").send()).await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert_eq!(env.admin("flows").await?["flows"], json!([]));
    env.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn appflow_modelled_errors_reach_the_sdk_as_typed_variants() -> anyhow::Result<()> {
    let env = env_with(quiet_config()).await?;
    let (lo, hi) = (ms(2024, 1, 1), ms(2024, 2, 1));
    create_batch_flow(&env, "fp-e-b0000", lo, hi).await?;

    let err = service_error(batch_flow(&env.appflow, "fp-e-b0000", lo, hi).send()).await;
    assert!(err.is_conflict_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("fp-e-b0000"));

    let err = service_error(batch_flow(&env.appflow, "bad name", lo, hi).send()).await;
    assert!(err.is_validation_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("flowName"));

    let err = service_error(
        env.appflow
            .create_flow()
            .flow_name("fp-e-nosource")
            .trigger_config(on_demand())
            .source_flow_config(source("no-such-profile"))
            .destination_flow_config_list(destination("Account"))
            .tasks(map_all())
            .send(),
    )
    .await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("no-such-profile")
    );

    // Missing required member `tasks`.
    let err = service_error(
        env.appflow
            .create_flow()
            .flow_name("fp-e-notasks")
            .trigger_config(on_demand())
            .source_flow_config(source(PROFILE))
            .destination_flow_config_list(destination("Account"))
            .send(),
    )
    .await;
    assert!(err.is_validation_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("tasks"));

    // A BETWEEN filter whose bound is not epoch milliseconds.
    let bad_filter = af::Task::builder()
        .task_type(af::TaskType::Filter)
        .source_fields("LastModifiedDate")
        .connector_operator(
            af::ConnectorOperator::builder()
                .salesforce(af::SalesforceConnectorOperator::Between)
                .build(),
        )
        .task_properties(af::OperatorPropertiesKeys::LowerBound, "last tuesday")
        .task_properties(af::OperatorPropertiesKeys::UpperBound, "1")
        .build()?;
    let err = service_error(
        env.appflow
            .create_flow()
            .flow_name("fp-e-badfilter")
            .trigger_config(on_demand())
            .source_flow_config(source(PROFILE))
            .destination_flow_config_list(destination("Account"))
            .tasks(bad_filter)
            .send(),
    )
    .await;
    assert!(err.is_validation_exception(), "{err:?}");

    // Same clientToken, different parameters.
    batch_flow(&env.appflow, "fp-e-tok", lo, hi)
        .client_token("tok-1")
        .send()
        .await?;
    let again = batch_flow(&env.appflow, "fp-e-tok", lo, hi)
        .client_token("tok-1")
        .send()
        .await?;
    assert_eq!(
        again.flow_status(),
        Some(&af::FlowStatus::Active),
        "same token, same params replays"
    );
    let err = service_error(
        batch_flow(&env.appflow, "fp-e-tok", lo, hi + 1)
            .client_token("tok-1")
            .send(),
    )
    .await;
    assert!(err.is_conflict_exception(), "{err:?}");

    let err = service_error(env.appflow.stop_flow().flow_name("fp-e-b0000").send()).await;
    assert!(err.is_unsupported_operation_exception(), "{err:?}");
    let err = service_error(env.appflow.start_flow().flow_name("nope-x").send()).await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = service_error(env.appflow.delete_flow().flow_name("nope-x").send()).await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = service_error(
        env.appflow
            .describe_flow_execution_records()
            .flow_name("nope-x")
            .send(),
    )
    .await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = service_error(
        env.appflow
            .list_tags_for_resource()
            .resource_arn("arn:aws:appflow:us-east-1:123456789012:flow/nope-x")
            .send(),
    )
    .await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    env.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn start_flow_with_the_same_client_token_starts_one_run() -> anyhow::Result<()> {
    let env = env_with(quiet_config()).await?;
    create_batch_flow(&env, "fp-idem-b0000", ms(2024, 1, 1), ms(2024, 1, 8)).await?;
    let start = || {
        env.appflow
            .start_flow()
            .flow_name("fp-idem-b0000")
            .client_token("wf:0:1")
            .send()
    };
    let a = start().await?;
    let b = start().await?;
    assert!(a.execution_id().is_some());
    assert_eq!(a.execution_id(), b.execution_id());
    env.finished("fp-idem-b0000", a.execution_id().unwrap_or_default())
        .await?;
    let c = start().await?;
    assert_eq!(
        a.execution_id(),
        c.execution_id(),
        "still the same run after it finished"
    );

    let runs = env.admin("runs").await?;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["duplicate_writes"].as_u64(), Some(0));

    let d = env
        .appflow
        .start_flow()
        .flow_name("fp-idem-b0000")
        .client_token("wf:0:2")
        .send()
        .await?;
    assert_ne!(
        d.execution_id(),
        a.execution_id(),
        "a new token is a new run"
    );
    env.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn execution_records_paginate_and_find_every_run() -> anyhow::Result<()> {
    let env = env_with(quiet_config()).await?;
    create_batch_flow(&env, "fp-page-b0000", ms(2024, 1, 1), ms(2024, 1, 2)).await?;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(start_run(&env, "fp-page-b0000").await?);
    }
    for id in &ids {
        env.finished("fp-page-b0000", id).await?;
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = env
            .appflow
            .describe_flow_execution_records()
            .flow_name("fp-page-b0000")
            .max_results(2)
            .set_next_token(token)
            .send()
            .await?;
        pages += 1;
        assert!(out.flow_executions().len() <= 2);
        seen.extend(
            out.flow_executions()
                .iter()
                .filter_map(|r| r.execution_id().map(str::to_owned)),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let (mut a, mut b) = (seen.clone(), ids.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let runs = env.admin("runs").await?;
    assert_eq!(
        runs["max_concurrent_per_flow"]["fp-page-b0000"]
            .as_u64()
            .map(|n| n >= 1),
        Some(true)
    );
    env.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn cancel_flow_executions_cancels_in_progress_runs_only() -> anyhow::Result<()> {
    let mut config = quiet_config();
    config.faults.run_duration_ms = flowpilot_sim::DurationRange {
        min: 5_000,
        max: 5_000,
    };
    let env = env_with(config).await?;
    create_batch_flow(&env, "fp-cancel-b0000", ms(2024, 1, 1), ms(2024, 2, 1)).await?;
    let id = start_run(&env, "fp-cancel-b0000").await?;
    let err = service_error(
        env.appflow
            .delete_flow()
            .flow_name("fp-cancel-b0000")
            .send(),
    )
    .await;
    assert!(
        err.is_conflict_exception(),
        "a running flow needs forceDelete: {err:?}"
    );
    let out = env
        .appflow
        .cancel_flow_executions()
        .flow_name("fp-cancel-b0000")
        .execution_ids(&id)
        .execution_ids("00000000-0000-0000-0000-000000000000")
        .send()
        .await?;
    assert_eq!(
        out.invalid_executions(),
        ["00000000-0000-0000-0000-000000000000".to_owned()]
    );
    let rec = env.finished("fp-cancel-b0000", &id).await?;
    assert_eq!(rec.execution_status(), Some(&af::ExecutionStatus::Canceled));
    env.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn scripted_failure_is_reported_with_its_message_and_partial_writes() -> anyhow::Result<()> {
    let env = env_with(quiet_config()).await?;
    env.set_faults(&FaultPlan {
        run_failures: vec![RunFailure {
            partial_fraction: 0.5,
            ..failing_runs(
                "-b0001",
                vec![1],
                "INVALID_SESSION_ID: Session expired or invalid",
            )
        }],
        run_duration_ms: flowpilot_sim::DurationRange { min: 20, max: 40 },
        ..FaultPlan::default()
    })
    .await?;
    create_batch_flow(&env, "fp-f-b0001", ms(2024, 1, 1), ms(2024, 1, 11)).await?;
    let first = start_run(&env, "fp-f-b0001").await?;
    let rec = env.finished("fp-f-b0001", &first).await?;
    assert_eq!(rec.execution_status(), Some(&af::ExecutionStatus::Error));
    let info = rec
        .execution_result()
        .and_then(|r| r.error_info())
        .context("errorInfo")?;
    assert_eq!(
        info.execution_message(),
        Some("INVALID_SESSION_ID: Session expired or invalid")
    );
    let ledger = ledger_summary(&env).await?;
    assert_eq!(
        ledger["distinct_records"].as_u64(),
        Some(250),
        "half of 10 days × 50"
    );

    // Attempt 2 is not scripted: it succeeds, rewriting the first half (duplicates).
    let second = start_run(&env, "fp-f-b0001").await?;
    let rec = env.finished("fp-f-b0001", &second).await?;
    assert_eq!(
        rec.execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(500));
    assert_eq!(ledger["duplicate_writes"].as_u64(), Some(250));
    let failed = find_event(&env, |e| {
        e["detail"]["execution-id"] == first.as_str()
            && e["detail-type"] == "AppFlow End Flow Run Report"
    })
    .await?
    .context("end report of the failed run")?;
    assert_eq!(failed["detail"]["status"], "Execution Failed");
    assert_eq!(
        failed["detail"]["error"],
        "INVALID_SESSION_ID: Session expired or invalid"
    );
    env.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn full_throttling_surfaces_throttling_exception_after_sdk_retries() -> anyhow::Result<()> {
    let mut config = quiet_config();
    config.faults.throttle_rate = 1.0;
    let sim = flowpilot_sim::start(config).await?;
    let sdk = admin_sdk(&sim.url()).await;
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_backoff(Duration::from_millis(20));
    let appflow = aws_sdk_appflow::Client::from_conf(
        aws_sdk_appflow::config::Builder::from(&sdk)
            .retry_config(retry.clone())
            .build(),
    );
    let profiles = aws_sdk_customerprofiles::Client::from_conf(
        aws_sdk_customerprofiles::config::Builder::from(&sdk)
            .retry_config(retry)
            .build(),
    );
    let err = service_error(appflow.list_flows().send()).await;
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_eq!(err.message(), Some("Rate exceeded"));
    let err = service_error(appflow.start_flow().flow_name("any-flow").send()).await;
    assert_eq!(err.code(), Some("ThrottlingException"));
    let err = service_error(profiles.get_domain().domain_name(DOMAIN).send()).await;
    assert!(err.is_throttling_exception(), "{err:?}");
    assert_eq!(err.message(), Some("Rate exceeded"));

    // The admin API is never throttled.
    let runs = reqwest::get(format!("{}/_sim/runs", sim.url())).await?;
    assert!(runs.status().is_success());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn customer_profiles_operations_round_trip_through_the_sdk() -> anyhow::Result<()> {
    let env = env_with(quiet_config()).await?;
    let p = &env.profiles;

    let d = p.get_domain().domain_name(DOMAIN).send().await?;
    assert_eq!(d.domain_name(), DOMAIN);
    assert_eq!(d.default_expiration_days(), Some(365));
    let err = service_error(
        p.create_domain()
            .domain_name(DOMAIN)
            .default_expiration_days(1)
            .send(),
    )
    .await;
    assert!(err.is_bad_request_exception(), "{err:?}");
    let err = service_error(p.get_domain().domain_name("nope").send()).await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("nope"));

    let ot = p
        .put_profile_object_type()
        .domain_name(DOMAIN)
        .object_type_name("Account")
        .description("Salesforce accounts")
        .allow_profile_creation(true)
        .send()
        .await?;
    assert_eq!(ot.object_type_name(), "Account");
    let err = service_error(
        p.put_profile_object_type()
            .domain_name("nope")
            .object_type_name("Account")
            .description("x")
            .send(),
    )
    .await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    // PutIntegration with a FlowDefinition creates the scheduled flow and returns its ARN.
    let def = cp::FlowDefinition::builder()
        .flow_name("fp-wf1-live")
        .kms_arn("arn:aws:kms:us-east-1:123456789012:key/abc")
        .source_flow_config(
            cp::SourceFlowConfig::builder()
                .connector_type(cp::SourceConnectorType::Salesforce)
                .connector_profile_name(PROFILE)
                .incremental_pull_config(
                    cp::IncrementalPullConfig::builder()
                        .datetime_type_field_name("LastModifiedDate")
                        .build(),
                )
                .source_connector_properties(
                    cp::SourceConnectorProperties::builder()
                        .salesforce(
                            cp::SalesforceSourceProperties::builder()
                                .object("Account")
                                .build()?,
                        )
                        .build(),
                )
                .build()?,
        )
        .tasks(
            cp::Task::builder()
                .task_type(cp::TaskType::Map)
                .source_fields("Id")
                .destination_field("Id")
                .connector_operator(
                    cp::ConnectorOperator::builder()
                        .salesforce(cp::SalesforceConnectorOperator::NoOp)
                        .build(),
                )
                .build()?,
        )
        .trigger_config(
            cp::TriggerConfig::builder()
                .trigger_type(cp::TriggerType::Scheduled)
                .trigger_properties(
                    cp::TriggerProperties::builder()
                        .scheduled(
                            cp::ScheduledTriggerProperties::builder()
                                .schedule_expression("rate(1hours)")
                                .data_pull_mode(cp::DataPullMode::Incremental)
                                .first_execution_from(aws_smithy_types_datetime(ms(2024, 3, 1)))
                                .build()?,
                        )
                        .build(),
                )
                .build()?,
        )
        .build()?;
    let put = p
        .put_integration()
        .domain_name(DOMAIN)
        .object_type_name("Account")
        .flow_definition(def)
        .tags("owner", "flowpilot")
        .send()
        .await?;
    let uri = put.uri().to_owned();
    assert_eq!(
        uri,
        "arn:aws:appflow:us-east-1:123456789012:flow/fp-wf1-live"
    );
    let flow = env
        .appflow
        .describe_flow()
        .flow_name("fp-wf1-live")
        .send()
        .await?;
    assert_eq!(flow.flow_status(), Some(&af::FlowStatus::Draft));
    let dest = flow.destination_flow_config_list()[0]
        .destination_connector_properties()
        .and_then(|d| d.customer_profiles())
        .context("CustomerProfiles destination")?;
    assert_eq!(
        (dest.domain_name(), dest.object_type_name()),
        (DOMAIN, Some("Account"))
    );
    let sched = flow
        .trigger_config()
        .and_then(|t| t.trigger_properties())
        .and_then(|p| p.scheduled())
        .context("scheduled trigger echoed")?;
    assert_eq!(
        sched.first_execution_from().map(|t| t.to_millis().ok()),
        Some(Some(ms(2024, 3, 1)))
    );

    let got = p
        .get_integration()
        .domain_name(DOMAIN)
        .uri(&uri)
        .send()
        .await?;
    assert_eq!(got.object_type_name(), Some("Account"));
    assert_eq!(
        got.tags().and_then(|t| t.get("owner")).map(String::as_str),
        Some("flowpilot")
    );

    // PutIntegration with the Uri of an existing flow links it.
    create_batch_flow(&env, "fp-wf1-other", ms(2024, 1, 1), ms(2024, 1, 2)).await?;
    let other = "arn:aws:appflow:us-east-1:123456789012:flow/fp-wf1-other";
    p.put_integration()
        .domain_name(DOMAIN)
        .uri(other)
        .object_type_name("Account")
        .send()
        .await?;
    let err = service_error(
        p.put_integration()
            .domain_name(DOMAIN)
            .uri("arn:aws:appflow:us-east-1:123456789012:flow/missing")
            .object_type_name("Account")
            .send(),
    )
    .await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    let list = p.list_integrations().domain_name(DOMAIN).send().await?;
    let mut uris: Vec<_> = list.items().iter().map(|i| i.uri().to_owned()).collect();
    uris.sort();
    assert_eq!(uris, vec![uri.clone(), other.to_owned()]);

    let del = p
        .delete_integration()
        .domain_name(DOMAIN)
        .uri(&uri)
        .send()
        .await?;
    assert!(!del.message().is_empty());
    let err = service_error(p.get_integration().domain_name(DOMAIN).uri(&uri).send()).await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = service_error(p.delete_integration().domain_name(DOMAIN).uri(&uri).send()).await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    env.sim.shutdown().await;
    Ok(())
}

fn aws_smithy_types_datetime(ms: i64) -> aws_sdk_customerprofiles::primitives::DateTime {
    aws_sdk_customerprofiles::primitives::DateTime::from_millis(ms)
}

#[tokio::test]
async fn scheduled_flow_pulls_contiguous_windows_and_deactivates_after_failures()
-> anyhow::Result<()> {
    let mut config = quiet_config();
    config.tick_ms = 50;
    let env = env_with(config).await?;
    env.set_faults(&FaultPlan {
        run_failures: vec![RunFailure {
            from_attempt: Some(4),
            to_attempt: Some(5),
            ..failing_runs("-live", vec![], "Rate exceeded")
        }],
        run_duration_ms: flowpilot_sim::DurationRange { min: 10, max: 20 },
        ..FaultPlan::default()
    })
    .await?;
    let first = ms(2024, 6, 1);
    let trigger = af::TriggerConfig::builder()
        .trigger_type(af::TriggerType::Scheduled)
        .trigger_properties(
            af::TriggerProperties::builder()
                .scheduled(
                    af::ScheduledTriggerProperties::builder()
                        .schedule_expression("rate(1 days)")
                        .data_pull_mode(af::DataPullMode::Incremental)
                        .first_execution_from(aws_sdk_appflow::primitives::DateTime::from_millis(
                            first,
                        ))
                        .flow_error_deactivation_threshold(2)
                        .build()?,
                )
                .build(),
        )
        .build()?;
    let created = env
        .appflow
        .create_flow()
        .flow_name("fp-wf2-live")
        .trigger_config(trigger)
        .source_flow_config(source(PROFILE))
        .destination_flow_config_list(destination("Account"))
        .tasks(map_all())
        .send()
        .await?;
    assert_eq!(created.flow_status(), Some(&af::FlowStatus::Draft));
    let started = env
        .appflow
        .start_flow()
        .flow_name("fp-wf2-live")
        .send()
        .await?;
    assert_eq!(
        started.execution_id(),
        None,
        "scheduled StartFlow only activates"
    );
    assert_eq!(started.flow_status(), Some(&af::FlowStatus::Active));

    // Runs 1-3 succeed (three days), runs 4 and 5 fail: threshold 2 deactivates the flow.
    let flow = poll_until(WAIT, || async {
        let d = env
            .appflow
            .describe_flow()
            .flow_name("fp-wf2-live")
            .send()
            .await?;
        Ok((d.flow_status() == Some(&af::FlowStatus::Errored)).then_some(d))
    })
    .await?;
    assert!(
        flow.flow_status_message()
            .unwrap_or_default()
            .contains("Rate exceeded")
    );
    let runs = env.admin("runs").await?;
    let runs = runs["runs"].as_array().context("runs")?.clone();
    assert_eq!(runs.len(), 5, "{runs:?}");
    let statuses: Vec<_> = runs
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["Successful", "Successful", "Successful", "Error", "Error"]
    );
    // Contiguous daily windows from firstExecutionFrom; the failed runs retry day 4.
    let froms: Vec<_> = runs
        .iter()
        .map(|r| {
            r["incremental_from"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(froms[0], "2024-06-01T00:00:00Z");
    assert_eq!(
        froms[1],
        runs[0]["incremental_to"].as_str().unwrap_or_default()
    );
    assert_eq!(froms[3], froms[4]);
    let ledger = ledger_summary(&env).await?;
    let expected = source_count(&env, "2024-06-01T00:00:00Z", "2024-06-04T00:00:00Z").await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(expected));
    assert_eq!(expected, 150);
    let deact = find_event(&env, |e| {
        e["detail-type"] == "AppFlow Scheduled Flow Deactivated"
    })
    .await?
    .context("deactivation event")?;
    assert_eq!(deact["detail"]["flow-name"], "fp-wf2-live");
    assert_eq!(
        runs_max(&env).await?,
        1,
        "never two concurrent runs of one scheduled flow"
    );

    // StartFlow reactivates; StopFlow suspends and no further runs start.
    env.appflow
        .start_flow()
        .flow_name("fp-wf2-live")
        .send()
        .await?;
    poll_until(WAIT, || async {
        let runs = env.admin("runs").await?;
        Ok((runs["runs"].as_array().map(Vec::len).unwrap_or(0) >= 6).then_some(()))
    })
    .await?;
    let stopped = env
        .appflow
        .stop_flow()
        .flow_name("fp-wf2-live")
        .send()
        .await?;
    assert_eq!(stopped.flow_status(), Some(&af::FlowStatus::Suspended));
    env.sim.shutdown().await;
    Ok(())
}

/// A rebuild relies on these: StopFlow leaves a run in progress alone (it finishes and writes,
/// and no further run starts), and a forced DeleteFlow does not stop one either (it still
/// writes, after DescribeFlowExecutionRecords stopped knowing the flow).
#[tokio::test]
async fn stop_flow_and_a_forced_delete_leave_the_run_in_progress_writing() -> anyhow::Result<()> {
    let mut config = quiet_config();
    config.tick_ms = 50;
    let env = env_with(config).await?;
    env.set_faults(&FaultPlan {
        run_duration_ms: flowpilot_sim::DurationRange {
            min: 1_500,
            max: 1_500,
        },
        ..FaultPlan::default()
    })
    .await?;
    let trigger = af::TriggerConfig::builder()
        .trigger_type(af::TriggerType::Scheduled)
        .trigger_properties(
            af::TriggerProperties::builder()
                .scheduled(
                    af::ScheduledTriggerProperties::builder()
                        .schedule_expression("rate(1 days)")
                        .data_pull_mode(af::DataPullMode::Incremental)
                        .first_execution_from(aws_sdk_appflow::primitives::DateTime::from_millis(
                            ms(2024, 6, 1),
                        ))
                        .build()?,
                )
                .build(),
        )
        .build()?;
    let in_progress = |flow: &'static str| {
        let env = &env;
        async move {
            poll_until(WAIT, || async {
                let out = env
                    .appflow
                    .describe_flow_execution_records()
                    .flow_name(flow)
                    .send()
                    .await?;
                Ok(out
                    .flow_executions()
                    .iter()
                    .find(|r| r.execution_status() == Some(&af::ExecutionStatus::Inprogress))
                    .and_then(|r| r.execution_id().map(str::to_owned)))
            })
            .await
        }
    };
    for flow in ["fp-wf3-live", "fp-wf3-live-g2"] {
        env.appflow
            .create_flow()
            .flow_name(flow)
            .trigger_config(trigger.clone())
            .source_flow_config(source(PROFILE))
            .destination_flow_config_list(destination("Account"))
            .tasks(map_all())
            .send()
            .await?;
        env.appflow.start_flow().flow_name(flow).send().await?;
    }

    // StopFlow: the run in progress finishes and writes; nothing starts after it.
    let run = in_progress("fp-wf3-live").await?;
    let stopped = env
        .appflow
        .stop_flow()
        .flow_name("fp-wf3-live")
        .send()
        .await?;
    assert_eq!(stopped.flow_status(), Some(&af::FlowStatus::Suspended));
    let record = env.finished("fp-wf3-live", &run).await?;
    assert_eq!(
        record.execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = env.admin("runs").await?;
    let of_stopped = runs["runs"]
        .as_array()
        .context("runs")?
        .iter()
        .filter(|r| r["flow_name"] == "fp-wf3-live")
        .count();
    assert_eq!(of_stopped, 1, "a run started after StopFlow: {runs}");

    // A forced DeleteFlow: the flow is gone at once, its run still writes and reports.
    let run = in_progress("fp-wf3-live-g2").await?;
    let written = ledger_summary(&env).await?["records_written"]
        .as_u64()
        .context("records_written")?;
    env.appflow
        .delete_flow()
        .flow_name("fp-wf3-live-g2")
        .force_delete(true)
        .send()
        .await?;
    let gone = service_error(
        env.appflow
            .describe_flow_execution_records()
            .flow_name("fp-wf3-live-g2")
            .send(),
    )
    .await;
    assert_eq!(gone.code(), Some("ResourceNotFoundException"));
    let ended = poll_until(WAIT, || async {
        let runs = env.admin("runs").await?;
        Ok(runs["runs"].as_array().and_then(|a| {
            a.iter()
                .find(|r| r["execution_id"] == run.as_str() && r["status"] != "InProgress")
                .cloned()
        }))
    })
    .await?;
    assert_eq!(ended["status"], "Successful", "{ended}");
    let after = ledger_summary(&env).await?["records_written"]
        .as_u64()
        .context("records_written")?;
    assert!(
        after > written,
        "the deleted flow's run wrote nothing ({written} → {after})"
    );
    env.sim.shutdown().await;
    Ok(())
}

async fn runs_max(env: &Env) -> anyhow::Result<u64> {
    env.admin("runs").await?["max_concurrent_per_flow"]["fp-wf2-live"]
        .as_u64()
        .context("max concurrent")
}

#[tokio::test]
async fn requests_without_authorization_and_non_loopback_binds_are_refused() -> anyhow::Result<()> {
    let sim = flowpilot_sim::start(quiet_config()).await?;
    let resp = reqwest::Client::new()
        .post(format!("{}/list-flows", sim.url()))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok()),
        Some("MissingAuthenticationTokenException")
    );
    let body: Value = resp.json().await?;
    assert_eq!(body["message"], "Missing Authentication Token");
    sim.shutdown().await;

    let mut config = quiet_config();
    config.bind = "0.0.0.0".parse()?;
    let err = flowpilot_sim::start(config)
        .await
        .err()
        .context("0.0.0.0 must be refused")?;
    assert!(err.to_string().contains("non-loopback"), "{err}");

    let mut config = SimConfig::default();
    config.events.endpoint_url = Some("https://events.us-east-1.amazonaws.com".into());
    let err = flowpilot_sim::start(config)
        .await
        .err()
        .context("remote EventBridge must be refused")?;
    assert!(err.to_string().contains("loopback"), "{err}");

    let mut config = quiet_config();
    config.iam.upstream_url = Some("https://sqs.us-east-1.amazonaws.com".into());
    let err = flowpilot_sim::start(config)
        .await
        .err()
        .context("a remote upstream for the IAM front must be refused")?;
    assert!(err.to_string().contains("loopback"), "{err}");
    let mut config = quiet_config();
    config.port = crate::support::moto::free_port()?;
    config.iam.upstream_url = Some(format!("http://127.0.0.1:{}", config.port));
    let err = flowpilot_sim::start(config)
        .await
        .err()
        .context("the simulator as its own upstream must be refused")?;
    assert!(err.to_string().contains("is the simulator itself"), "{err}");
    Ok(())
}

/// Issue 3 acceptance: a BETWEEN-filtered on-demand flow's End report reaches SQS through a
/// moto EventBridge rule, and the ledger holds exactly the source's records of that window.
#[tokio::test]
async fn end_report_reaches_sqs_via_moto_and_ledger_matches_source() -> anyhow::Result<()> {
    let moto = crate::support::Moto::start().await?;
    let moto_sdk = crate::support::sdk_config(&moto.url).await;
    let sqs = aws_sdk_sqs::Client::new(&moto_sdk);
    let events = aws_sdk_eventbridge::Client::new(&moto_sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name("appflow-reports")
        .send()
        .await?
        .queue_url()
        .context("queue url")?
        .to_owned();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?;
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .context("queue arn")?
        .clone();
    events
        .put_rule()
        .name("appflow-runs")
        .event_pattern(
            json!({"source": ["aws.appflow"], "detail-type": ["AppFlow End Flow Run Report"], "detail": {"flow-name": [{"prefix": "fp-"}]}})
                .to_string(),
        )
        .send()
        .await?;
    events
        .put_targets()
        .rule("appflow-runs")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(&queue_arn)
                .build()?,
        )
        .send()
        .await?;

    let mut config = quiet_config();
    config.events.disabled = false;
    config.events.endpoint_url = Some(moto.url.clone());
    config.events.access_key_id = Some(crate::support::ACCESS_KEY_ID.into());
    config.events.secret_access_key = Some(crate::support::SECRET_ACCESS_KEY.into());
    config.faults.run_duration_ms = flowpilot_sim::DurationRange { min: 50, max: 100 };
    config.faults.run_failures = vec![failing_runs("-b0001", vec![1], "Rate exceeded")];
    let env = env_with(config).await?;

    let (lo, hi) = (ms(2023, 11, 1), ms(2024, 1, 1));
    create_batch_flow(&env, "fp-e2e-b0000", lo, hi).await?;
    create_batch_flow(&env, "fp-e2e-b0001", hi, ms(2024, 3, 1)).await?;
    let ok_id = start_run(&env, "fp-e2e-b0000").await?;
    let bad_id = start_run(&env, "fp-e2e-b0001").await?;

    let has = |msgs: &[Value], id: &str| msgs.iter().any(|m| m["detail"]["execution-id"] == id);
    let msgs = crate::support::drain_queue(
        &sqs,
        &queue_url,
        |m| has(m, &ok_id) && has(m, &bad_id),
        WAIT,
    )
    .await?;
    let ok = msgs
        .iter()
        .find(|m| m["detail"]["execution-id"] == ok_id.as_str())
        .context("ok report")?;
    assert_eq!(ok["source"], "aws.appflow");
    assert_eq!(ok["detail-type"], "AppFlow End Flow Run Report");
    let d = &ok["detail"];
    assert_eq!(d["flow-name"], "fp-e2e-b0000");
    assert_eq!(
        d["flow-arn"],
        "arn:aws:appflow:us-east-1:123456789012:flow/fp-e2e-b0000"
    );
    assert_eq!(d["status"], "Execution Successful");
    assert_eq!(d["trigger-type"], "ONDEMAND");
    assert_eq!(d["source"], format!("SALESFORCE/{PROFILE}"));
    assert_eq!(d["destination"], "CUSTOMERPROFILES");
    assert!(
        d["start-time"]
            .as_str()
            .is_some_and(|t| t.ends_with("Z[UTC]")),
        "{d}"
    );
    assert!(
        d["end-time"]
            .as_str()
            .is_some_and(|t| t.ends_with("Z[UTC]")),
        "{d}"
    );
    let processed: u64 = d["num-of-records-processed"]
        .as_str()
        .context("counts are strings")?
        .parse()?;

    let expected = source_count(&env, "2023-11-01T00:00:00Z", "2024-01-01T00:00:00Z").await?;
    assert_eq!(expected, 61 * 50);
    assert_eq!(processed, expected);
    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(expected));
    assert_eq!(ledger["records_written"].as_u64(), Some(expected));

    let bad = msgs
        .iter()
        .find(|m| m["detail"]["execution-id"] == bad_id.as_str())
        .context("failed report")?;
    assert_eq!(bad["detail"]["status"], "Execution Failed");
    assert_eq!(bad["detail"]["error"], "Rate exceeded");

    // The worker's own parser accepts both reports as they arrived from the queue (the
    // simulator builds this JSON independently of the core's types).
    let parsed = |m: &Value| flowpilot::core::event::parse_message(&m.to_string());
    let Ok(Message::Workflow {
        workflow_id,
        input: Input::RunEnded(r),
    }) = parsed(ok)
    else {
        panic!(
            "the core parser did not accept the success report: {:?}",
            parsed(ok)
        );
    };
    assert_eq!(workflow_id.as_str(), "e2e");
    assert_eq!(r.role, FlowRole::Batch(0));
    assert!(r.succeeded);
    assert_eq!(r.execution_id.as_deref(), Some(ok_id.as_str()));
    assert_eq!(r.records_processed, Some(expected));
    assert!(r.ended_at.is_some());
    let Ok(Message::Workflow {
        input: Input::RunEnded(r),
        ..
    }) = parsed(bad)
    else {
        panic!(
            "the core parser did not accept the failure report: {:?}",
            parsed(bad)
        );
    };
    assert_eq!(r.role, FlowRole::Batch(1));
    assert!(!r.succeeded);
    assert_eq!(r.error.as_deref(), Some("Rate exceeded"));
    env.sim.shutdown().await;
    Ok(())
}

/// Issue 10: a run whose records are not all written still ends "Execution Successful"; the
/// End report's `num-of-record-failures`, the execution record's `errorInfo` and DescribeFlow
/// say so, the ledger misses exactly those records, and a re-run of the window writes them
/// (the records the first run wrote become duplicate writes: the ledger counts every write).
#[tokio::test]
async fn record_failures_are_reported_missing_in_the_ledger_and_filled_by_a_rerun()
-> anyhow::Result<()> {
    const MESSAGE: &str = "50 records could not be written to Customer Profiles: ObjectType mapping rejected the record";
    let env = env_with(quiet_config()).await?;
    env.set_faults(&FaultPlan {
        record_failures: vec![flowpilot_sim::RecordFailure {
            flow_suffix: "-b0002".into(),
            attempts: vec![1],
            from_attempt: None,
            to_attempt: None,
            fraction: 0.1,
            message: MESSAGE.into(),
        }],
        run_duration_ms: flowpilot_sim::DurationRange { min: 20, max: 40 },
        ..FaultPlan::default()
    })
    .await?;
    create_batch_flow(&env, "fp-rf-b0002", ms(2024, 1, 1), ms(2024, 1, 11)).await?;
    let source = source_count(&env, "2024-01-01T00:00:00Z", "2024-01-11T00:00:00Z").await?;
    assert_eq!(source, 500, "10 days × 50");

    let first = start_run(&env, "fp-rf-b0002").await?;
    let rec = env.finished("fp-rf-b0002", &first).await?;
    assert_eq!(
        rec.execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    let result = rec.execution_result().context("executionResult")?;
    assert_eq!(result.records_processed(), Some(500));
    let info = result
        .error_info()
        .context("errorInfo on a successful run")?;
    assert_eq!(info.put_failures_count(), Some(50), "10% of 500");
    assert_eq!(info.execution_message(), Some(MESSAGE));

    let end = find_event(&env, |e| {
        e["detail"]["execution-id"] == first.as_str()
            && e["detail-type"] == "AppFlow End Flow Run Report"
    })
    .await?
    .context("End report")?;
    let d = &end["detail"];
    assert_eq!(d["status"], "Execution Successful");
    assert_eq!(d["num-of-record-failures"], "50", "counts are strings");
    assert_eq!(d["num-of-records-processed"], "500");
    assert!(
        d.get("error").is_none(),
        "no `error` on a successful run: {d}"
    );
    assert!(
        d["end-time"]
            .as_str()
            .is_some_and(|t| t.ends_with("Z[UTC]"))
    );

    let flow = env
        .appflow
        .describe_flow()
        .flow_name("fp-rf-b0002")
        .send()
        .await?;
    let last = flow
        .last_run_execution_details()
        .context("lastRunExecutionDetails")?;
    assert_eq!(
        last.most_recent_execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    assert_eq!(last.most_recent_execution_message(), Some(MESSAGE));

    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(source - 50));
    assert_eq!(ledger["failed_records_missing"].as_u64(), Some(50));
    assert_eq!(ledger["record_put_failures"].as_u64(), Some(50));
    assert_eq!(ledger["duplicate_writes"].as_u64(), Some(0));
    let runs = env.admin("runs").await?;
    assert_eq!(runs["runs"][0]["record_failures"], 50);
    assert_eq!(runs["runs"][0]["records_written"], 450);

    // The re-run (attempt 2, not matched) writes the whole window: the 50 missing records
    // once, the 450 others a second time.
    let second = start_run(&env, "fp-rf-b0002").await?;
    let rec = env.finished("fp-rf-b0002", &second).await?;
    assert_eq!(
        rec.execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    assert!(
        rec.execution_result()
            .and_then(|r| r.error_info())
            .is_none(),
        "a clean run has no errorInfo"
    );
    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(source));
    assert_eq!(ledger["failed_records_missing"].as_u64(), Some(0));
    assert_eq!(ledger["duplicate_writes"].as_u64(), Some(450));
    assert_eq!(ledger["records_written"].as_u64(), Some(950));

    // DescribeFlowExecutionRecords one record per page still carries the fields.
    let (mut token, mut seen) = (None, Vec::new());
    loop {
        let out = env
            .appflow
            .describe_flow_execution_records()
            .flow_name("fp-rf-b0002")
            .max_results(1)
            .set_next_token(token)
            .send()
            .await?;
        seen.extend(out.flow_executions().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 2);
    let failures = |id: &str| {
        seen.iter()
            .find(|r| r.execution_id() == Some(id))
            .and_then(|r| r.execution_result())
            .and_then(|r| r.error_info())
            .and_then(|i| i.put_failures_count())
    };
    assert_eq!((failures(&first), failures(&second)), (Some(50), None));
    env.sim.shutdown().await;
    Ok(())
}

/// The Salesforce refresh-token policy for the credentials of a profile in the tests below.
fn salesforce_credentials() -> af::ConnectorProfileCredentials {
    af::ConnectorProfileCredentials::builder()
        .salesforce(
            af::SalesforceConnectorProfileCredentials::builder()
                .access_token("00D-renewed-access-token")
                .refresh_token("5Aep-renewed-refresh-token")
                .build(),
        )
        .build()
}

fn salesforce_properties() -> af::ConnectorProfileProperties {
    af::ConnectorProfileProperties::builder()
        .salesforce(
            af::SalesforceConnectorProfileProperties::builder()
                .instance_url("https://example.my.salesforce.com")
                .build(),
        )
        .build()
}

async fn profile_state(env: &Env) -> anyhow::Result<Value> {
    let all = env.admin("profiles").await?;
    all["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == PROFILE)
        .cloned()
        .context("profile in /_sim/profiles")
}

/// Issue 10: credentials that expire fail runs with Salesforce's session error, CreateFlow and
/// UpdateFlow answer ConnectorAuthenticationException, and UpdateConnectorProfile with new
/// credentials (not without) makes runs succeed again.
#[tokio::test]
async fn expired_credentials_fail_runs_until_update_connector_profile_renews_them()
-> anyhow::Result<()> {
    let env = env_with(quiet_config()).await?;
    env.set_faults(&FaultPlan {
        expire_credentials: vec![flowpilot_sim::CredentialExpiry {
            connector_profile: PROFILE.into(),
            after_runs: 1,
            repeat: false,
            message: flowpilot_sim::faults::DEFAULT_EXPIRED_MESSAGE.into(),
        }],
        run_duration_ms: flowpilot_sim::DurationRange { min: 20, max: 40 },
        ..FaultPlan::default()
    })
    .await?;
    create_batch_flow(&env, "fp-ex-b0000", ms(2024, 1, 1), ms(2024, 1, 3)).await?;
    let ok = start_run(&env, "fp-ex-b0000").await?;
    let rec = env.finished("fp-ex-b0000", &ok).await?;
    assert_eq!(
        rec.execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    assert_eq!(
        profile_state(&env).await?["credentials"]["state"],
        "expired"
    );

    let failed = start_run(&env, "fp-ex-b0000").await?;
    let rec = env.finished("fp-ex-b0000", &failed).await?;
    assert_eq!(rec.execution_status(), Some(&af::ExecutionStatus::Error));
    let info = rec
        .execution_result()
        .and_then(|r| r.error_info())
        .context("errorInfo")?;
    assert_eq!(
        info.execution_message(),
        Some("INVALID_SESSION_ID: Session expired or invalid")
    );
    assert_eq!(
        rec.execution_result().and_then(|r| r.records_processed()),
        Some(0)
    );
    let flow = env
        .appflow
        .describe_flow()
        .flow_name("fp-ex-b0000")
        .send()
        .await?;
    let last = flow.last_run_execution_details().context("last run")?;
    assert_eq!(
        last.most_recent_execution_status(),
        Some(&af::ExecutionStatus::Error)
    );
    assert_eq!(
        last.most_recent_execution_message(),
        Some("INVALID_SESSION_ID: Session expired or invalid")
    );

    let err = service_error(
        batch_flow(&env.appflow, "fp-ex-b0001", ms(2024, 1, 3), ms(2024, 1, 5)).send(),
    )
    .await;
    assert!(err.is_connector_authentication_exception(), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains(PROFILE),
        "{err:?}"
    );
    let err = service_error(
        env.appflow
            .update_flow()
            .flow_name("fp-ex-b0000")
            .trigger_config(on_demand())
            .source_flow_config(source(PROFILE))
            .destination_flow_config_list(destination("Account"))
            .tasks(map_all())
            .send(),
    )
    .await;
    assert!(err.is_connector_authentication_exception(), "{err:?}");

    let before = env
        .appflow
        .describe_connector_profiles()
        .connector_profile_names(PROFILE)
        .send()
        .await?;
    let before = before.connector_profile_details()[0]
        .last_updated_at()
        .context("lastUpdatedAt")?
        .to_millis()?;

    // Properties alone do not re-authenticate.
    let update = || {
        env.appflow
            .update_connector_profile()
            .connector_profile_name(PROFILE)
            .connection_mode(af::ConnectionMode::Public)
    };
    let out = update()
        .connector_profile_config(
            af::ConnectorProfileConfig::builder()
                .connector_profile_properties(salesforce_properties())
                .build(),
        )
        .send()
        .await?;
    assert_eq!(
        out.connector_profile_arn(),
        Some(format!("arn:aws:appflow:us-east-1:123456789012:connectorprofile/{PROFILE}").as_str())
    );
    assert_eq!(
        profile_state(&env).await?["credentials"]["state"],
        "expired"
    );

    tokio::time::sleep(Duration::from_millis(5)).await;
    update()
        .connector_profile_config(
            af::ConnectorProfileConfig::builder()
                .connector_profile_properties(salesforce_properties())
                .connector_profile_credentials(salesforce_credentials())
                .build(),
        )
        .client_token("renew-1")
        .send()
        .await?;
    let state = profile_state(&env).await?;
    assert_eq!(state["credentials"]["state"], "valid");
    assert_eq!(state["credentials"]["renewals"], 1);
    let after = env
        .appflow
        .describe_connector_profiles()
        .connector_profile_names(PROFILE)
        .send()
        .await?;
    let after = after.connector_profile_details()[0]
        .last_updated_at()
        .context("lastUpdatedAt")?
        .to_millis()?;
    assert!(after > before, "lastUpdatedAt bumped: {before} → {after}");

    // The same token with other parameters is a conflict; the rule fired once: runs succeed.
    let err = service_error(
        update()
            .connector_profile_config(
                af::ConnectorProfileConfig::builder()
                    .connector_profile_properties(salesforce_properties())
                    .build(),
            )
            .client_token("renew-1")
            .send(),
    )
    .await;
    assert!(err.is_conflict_exception(), "{err:?}");
    create_batch_flow(&env, "fp-ex-b0001", ms(2024, 1, 3), ms(2024, 1, 5)).await?;
    for flow in ["fp-ex-b0000", "fp-ex-b0001"] {
        let id = start_run(&env, flow).await?;
        let rec = env.finished(flow, &id).await?;
        assert_eq!(
            rec.execution_status(),
            Some(&af::ExecutionStatus::Successful),
            "{flow}"
        );
    }
    let err = service_error(
        env.appflow
            .update_connector_profile()
            .connector_profile_name("no-such-profile")
            .connection_mode(af::ConnectionMode::Public)
            .connector_profile_config(
                af::ConnectorProfileConfig::builder()
                    .connector_profile_properties(salesforce_properties())
                    .build(),
            )
            .send(),
    )
    .await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    env.sim.shutdown().await;
    Ok(())
}

/// UpdateConnectorProfile authorizes `appflow:UpdateConnectorProfile` on the profile's ARN.
#[tokio::test]
async fn update_connector_profile_is_authorized_on_the_profile_arn() -> anyhow::Result<()> {
    const KEY: &str = "AKIAPROFILEUPDATER01";
    let mut config = quiet_config();
    let mut doc = json!(crate::support::admin_identities(ADMIN_KEY));
    let other = "arn:aws:appflow:us-east-1:123456789012:connectorprofile/other";
    doc["users"].as_array_mut().context("users")?.push(json!({
        "arn": "arn:aws:iam::123456789012:user/profile-updater",
        "access_key_id": KEY,
        "secret_access_key": crate::support::SECRET_ACCESS_KEY,
        "policies": [{ "name": "update-other", "document": { "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "appflow:UpdateConnectorProfile",
                            "Resource": other }] } }]
    }));
    config.iam.identities = Some(serde_json::from_value(doc)?);
    let env = env_with(config).await?;
    let sdk = crate::support::sdk_config_with(
        &env.sim.url(),
        crate::support::static_credentials(KEY, crate::support::SECRET_ACCESS_KEY),
    )
    .await;
    let restricted = aws_sdk_appflow::Client::new(&sdk);
    let err = service_error(
        restricted
            .update_connector_profile()
            .connector_profile_name(PROFILE)
            .connection_mode(af::ConnectionMode::Public)
            .connector_profile_config(
                af::ConnectorProfileConfig::builder()
                    .connector_profile_properties(salesforce_properties())
                    .connector_profile_credentials(salesforce_credentials())
                    .build(),
            )
            .send(),
    )
    .await;
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");
    let msg = err.message().unwrap_or_default();
    assert!(
        msg.contains("appflow:UpdateConnectorProfile")
            && msg.contains(&format!("connectorprofile/{PROFILE}")),
        "{msg}"
    );
    // Allowed on its own profile: past IAM, the missing profile is the answer.
    let err = service_error(
        restricted
            .update_connector_profile()
            .connector_profile_name("other")
            .connection_mode(af::ConnectionMode::Public)
            .connector_profile_config(
                af::ConnectorProfileConfig::builder()
                    .connector_profile_properties(salesforce_properties())
                    .build(),
            )
            .send(),
    )
    .await;
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    env.sim.shutdown().await;
    Ok(())
}

/// Issue 10: the SaaS application's rolling API allowance. Runs of every flow on the profile
/// spend it; once spent they fail with Salesforce's REQUEST_LIMIT_EXCEEDED and write nothing;
/// when the (compressed) window rolls past the oldest calls, runs succeed again.
#[tokio::test]
async fn spent_api_budget_fails_runs_until_the_compressed_day_rolls() -> anyhow::Result<()> {
    const WINDOW_MS: u64 = 5_000;
    let env = env_with(quiet_config()).await?;
    env.set_faults(&FaultPlan {
        api_budget: vec![flowpilot_sim::ApiBudget {
            connector_profile: PROFILE.into(),
            calls_per_day: 2,
            calls_per_run: 1,
            records_per_call: None,
            window_ms: WINDOW_MS,
            message: flowpilot_sim::faults::DEFAULT_BUDGET_MESSAGE.into(),
        }],
        run_duration_ms: flowpilot_sim::DurationRange { min: 10, max: 20 },
        ..FaultPlan::default()
    })
    .await?;
    for (i, day) in (1..=4).enumerate() {
        let name = format!("fp-bud-b000{i}");
        create_batch_flow(&env, &name, ms(2024, 2, day), ms(2024, 2, day + 1)).await?;
    }
    for flow in ["fp-bud-b0000", "fp-bud-b0001"] {
        let id = start_run(&env, flow).await?;
        let rec = env.finished(flow, &id).await?;
        assert_eq!(
            rec.execution_status(),
            Some(&af::ExecutionStatus::Successful),
            "{flow}"
        );
    }
    let refused = start_run(&env, "fp-bud-b0002").await?;
    let rec = env.finished("fp-bud-b0002", &refused).await?;
    assert_eq!(rec.execution_status(), Some(&af::ExecutionStatus::Error));
    assert_eq!(
        rec.execution_result()
            .and_then(|r| r.error_info())
            .and_then(|i| i.execution_message()),
        Some("REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.")
    );
    let end = find_event(&env, |e| {
        e["detail"]["execution-id"] == refused.as_str()
            && e["detail-type"] == "AppFlow End Flow Run Report"
    })
    .await?
    .context("End report")?;
    assert_eq!(end["detail"]["status"], "Execution Failed");
    assert_eq!(
        end["detail"]["error"],
        "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."
    );
    assert_eq!(end["detail"]["num-of-records-processed"], "0");

    let state = profile_state(&env).await?;
    let budget = &state["api_budget"];
    assert_eq!(
        (budget["used"].as_u64(), budget["remaining"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(budget["refused_runs"], 1);
    assert_eq!(budget["window_ms"], WINDOW_MS);
    let refill: chrono::DateTime<Utc> = budget["next_refill_at"]
        .as_str()
        .context("next_refill_at")?
        .parse()?;
    assert!(
        refill > Utc::now(),
        "the oldest call is still in the window"
    );
    // Two of the four days are in; the refused run wrote nothing.
    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(100));

    // The window rolls: the first call leaves it and one run fits again.
    poll_until(Duration::from_millis(WINDOW_MS + 10_000), || async {
        let s = profile_state(&env).await?;
        Ok((s["api_budget"]["remaining"].as_u64() >= Some(1)).then_some(()))
    })
    .await?;
    assert!(Utc::now() >= refill);
    let id = start_run(&env, "fp-bud-b0002").await?;
    let rec = env.finished("fp-bud-b0002", &id).await?;
    assert_eq!(
        rec.execution_status(),
        Some(&af::ExecutionStatus::Successful)
    );
    let ledger = ledger_summary(&env).await?;
    assert_eq!(ledger["distinct_records"].as_u64(), Some(150));
    assert_eq!(ledger["duplicate_writes"].as_u64(), Some(0));
    env.sim.shutdown().await;
    Ok(())
}
