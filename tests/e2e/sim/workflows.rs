//! Customer Profiles' managed workflow (CreateIntegrationWorkflow, GetWorkflow,
//! GetWorkflowSteps, ListWorkflows, DeleteWorkflow) through the real
//! `aws-sdk-customerprofiles` client: shapes, pagination, the steps' flows and runs, retries,
//! the continuous integration, and the execution role's trust policy.

use anyhow::{Context as _, ensure};
use aws_sdk_customerprofiles::error::ProvideErrorMetadata;
use aws_sdk_customerprofiles::types as cp;
use flowpilot_sim::{FaultPlan, RunFailure, SimConfig};
use serde_json::json;

use super::{DOMAIN, Env, PROFILE, WAIT, env_with, ledger_summary, quiet_config, source_count};
use crate::support::managed::{day_batches, flow_definition};
use crate::support::{ACCOUNT_ID, poll_until};

const KMS: &str = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-4333-8444-555555555555";
const ROLE: &str = "arn:aws:iam::123456789012:role/cp-workflow";
/// A role Customer Profiles may not assume (it trusts ECS only).
const UNTRUSTING_ROLE: &str = "arn:aws:iam::123456789012:role/ecs-only";

fn config() -> SimConfig {
    let mut c = quiet_config();
    let mut doc = serde_json::to_value(c.iam.identities.take()).unwrap();
    let trust = |service: &str| {
        json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow",
            "Principal": { "Service": service }, "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:SourceAccount": ACCOUNT_ID } } }] })
    };
    let all = json!([{ "name": "all", "document": { "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }] } }]);
    doc["roles"] = json!([
        { "arn": ROLE, "trust_policy": trust("profile.amazonaws.com"), "policies": all },
        { "arn": UNTRUSTING_ROLE, "trust_policy": trust("ecs-tasks.amazonaws.com"), "policies": all },
    ]);
    c.iam.identities = Some(serde_json::from_value(doc).unwrap());
    c
}

async fn create(env: &Env, name: &str, role: &str, days: u32) -> anyhow::Result<String> {
    let out = env
        .profiles
        .create_integration_workflow()
        .domain_name(DOMAIN)
        .workflow_type(cp::WorkflowType::AppflowIntegration)
        .object_type_name("Account")
        .role_arn(role)
        .integration_config(
            cp::IntegrationConfig::builder()
                .appflow_integration(
                    cp::AppflowIntegration::builder()
                        .flow_definition(flow_definition(name, PROFILE, KMS)?)
                        .set_batches(Some(day_batches(days)?))
                        .build(),
                )
                .build(),
        )
        .send()
        .await?;
    let id = out.workflow_id().to_owned();
    ensure!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "WorkflowId {id}"
    );
    ensure!(!out.message().is_empty(), "Message is required");
    Ok(id)
}

async fn settled(env: &Env, id: &str) -> anyhow::Result<cp::Status> {
    poll_until(WAIT, || async {
        let w = env
            .profiles
            .get_workflow()
            .domain_name(DOMAIN)
            .workflow_id(id)
            .send()
            .await?;
        Ok(w.status()
            .filter(|s| matches!(s, cp::Status::Complete | cp::Status::Failed))
            .cloned())
    })
    .await
}

async fn runs_of(env: &Env, flow: &str) -> anyhow::Result<usize> {
    let runs = env.admin("runs").await?;
    Ok(runs["runs"]
        .as_array()
        .context("runs")?
        .iter()
        .filter(|r| r["flow_name"] == flow)
        .count())
}

#[tokio::test]
async fn managed_workflow_operations_round_trip_through_the_sdk() -> anyhow::Result<()> {
    let env = env_with(config()).await?;
    env.profiles
        .put_profile_object_type()
        .domain_name(DOMAIN)
        .object_type_name("Account")
        .description("accounts")
        .send()
        .await?;
    let id = create(&env, "fp-wf", ROLE, 3).await?;
    ensure!(
        settled(&env, &id).await? == cp::Status::Complete,
        "workflow did not complete"
    );

    let w = env
        .profiles
        .get_workflow()
        .domain_name(DOMAIN)
        .workflow_id(&id)
        .send()
        .await?;
    let m = w
        .metrics()
        .and_then(|m| m.appflow_integration())
        .context("Metrics.AppflowIntegration")?;
    ensure!(
        (m.total_steps(), m.steps_completed()) == (3, 3),
        "metrics {m:?}"
    );
    // Every source record of the three days, once (the live flow pulls only later ones).
    let expected = source_count(&env, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z").await?;
    ensure!(
        expected > 0 && m.records_processed() as u64 == expected,
        "RecordsProcessed {} vs the source's {expected}",
        m.records_processed()
    );
    ensure!(
        ledger_summary(&env).await?["duplicate_writes"].as_u64() == Some(0),
        "no duplicates"
    );
    let a = w
        .attributes()
        .and_then(|a| a.appflow_integration())
        .context("Attributes")?;
    ensure!(
        a.source_connector_type() == &cp::SourceConnectorType::Salesforce
            && a.connector_profile_name() == PROFILE
            && a.role_arn() == Some(ROLE),
        "attributes {a:?}"
    );
    ensure!(
        w.workflow_type() == Some(&cp::WorkflowType::AppflowIntegration)
            && w.start_date().is_some(),
        "{w:?}"
    );

    // Steps, two per page.
    let first = env
        .profiles
        .get_workflow_steps()
        .domain_name(DOMAIN)
        .workflow_id(&id)
        .max_results(2)
        .send()
        .await?;
    let token = first.next_token().context("a second page")?;
    let second = env
        .profiles
        .get_workflow_steps()
        .domain_name(DOMAIN)
        .workflow_id(&id)
        .max_results(2)
        .next_token(token)
        .send()
        .await?;
    ensure!(second.next_token().is_none(), "two pages only");
    let steps: Vec<_> = first
        .items()
        .iter()
        .chain(second.items())
        .filter_map(|i| i.appflow_integration())
        .collect();
    ensure!(steps.len() == 3, "{steps:?}");
    for (n, s) in steps.iter().enumerate() {
        ensure!(
            s.flow_name() == format!("fp-wf-s{n}")
                && s.status() == &cp::Status::Complete
                && s.batch_records_start_time() == format!("2024-01-0{}T00:00:00Z", n + 1),
            "step {n}: {s:?}"
        );
    }
    ensure!(
        steps.iter().map(|s| s.records_processed()).sum::<i64>() == m.records_processed(),
        "steps' records add up to the workflow's"
    );

    let listed = env
        .profiles
        .list_workflows()
        .domain_name(DOMAIN)
        .status(cp::Status::Complete)
        .send()
        .await?;
    ensure!(
        listed.items().iter().any(|i| i.workflow_id() == id),
        "ListWorkflows lists it"
    );

    // The continuous integration, found by WorkflowId; its flow is live.
    let integrations = env
        .profiles
        .list_integrations()
        .domain_name(DOMAIN)
        .send()
        .await?;
    let live = integrations
        .items()
        .iter()
        .find(|i| i.workflow_id() == Some(id.as_str()))
        .context("an integration with the workflow's id")?;
    ensure!(live.uri().ends_with("flow/fp-wf-live"), "{live:?}");
    let flow = env
        .appflow
        .describe_flow()
        .flow_name("fp-wf-live")
        .send()
        .await?;
    ensure!(
        flow.flow_status() == Some(&aws_sdk_appflow::types::FlowStatus::Active)
            && flow
                .tags()
                .and_then(|t| t.get("awsOwningService"))
                .map(String::as_str)
                == Some("customer-profiles-integration-workflow"),
        "{flow:?}"
    );

    // A role Customer Profiles cannot assume is refused at once.
    let e = create(&env, "fp-untrusted", UNTRUSTING_ROLE, 1)
        .await
        .unwrap_err();
    let text = format!("{e:?}");
    ensure!(
        text.contains("AccessDenied") && text.contains("trust policy"),
        "{text}"
    );

    // DeleteWorkflow: gone, with its step flows.
    env.profiles
        .delete_workflow()
        .domain_name(DOMAIN)
        .workflow_id(&id)
        .send()
        .await?;
    let e = env
        .profiles
        .get_workflow()
        .domain_name(DOMAIN)
        .workflow_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    ensure!(e.is_resource_not_found_exception(), "{e:?}");
    let e = env
        .appflow
        .describe_flow()
        .flow_name("fp-wf-s0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    ensure!(e.code() == Some("ResourceNotFoundException"), "{e:?}");
    env.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_step_is_retried_three_times_then_fails_the_workflow() -> anyhow::Result<()> {
    let env = env_with(config()).await?;
    env.set_faults(&FaultPlan {
        run_failures: vec![
            RunFailure {
                flow_suffix: "fp-once-s1".into(),
                attempts: vec![1],
                from_attempt: None,
                to_attempt: None,
                message: "Salesforce is briefly unavailable".into(),
                partial_fraction: 0.0,
            },
            RunFailure {
                flow_suffix: "fp-always-s1".into(),
                attempts: vec![],
                from_attempt: None,
                to_attempt: None,
                message: "Salesforce keeps failing".into(),
                partial_fraction: 0.0,
            },
        ],
        // Long enough that the retry run is seen in progress (status RETRY) by a 50 ms poll.
        run_duration_ms: flowpilot_sim::DurationRange { min: 250, max: 250 },
        ..FaultPlan::default()
    })
    .await?;
    let once = create(&env, "fp-once", ROLE, 3).await?;
    poll_until(WAIT, || async {
        let w = env
            .profiles
            .get_workflow()
            .domain_name(DOMAIN)
            .workflow_id(&once)
            .send()
            .await?;
        ensure!(
            w.status() != Some(&cp::Status::Complete),
            "completed without ever showing RETRY"
        );
        Ok((w.status() == Some(&cp::Status::Retry)).then_some(()))
    })
    .await?;
    ensure!(settled(&env, &once).await? == cp::Status::Complete);
    ensure!(runs_of(&env, "fp-once-s1").await? == 2, "one retry");

    let always = create(&env, "fp-always", ROLE, 3).await?;
    ensure!(settled(&env, &always).await? == cp::Status::Failed);
    ensure!(runs_of(&env, "fp-always-s1").await? == 4, "three retries");
    ensure!(
        runs_of(&env, "fp-always-s2").await? == 0,
        "later batches never ran"
    );
    let w = env
        .profiles
        .get_workflow()
        .domain_name(DOMAIN)
        .workflow_id(&always)
        .send()
        .await?;
    let error = w.error_description().unwrap_or_default();
    ensure!(error.contains("Salesforce keeps failing"), "{error}");
    let steps = env
        .profiles
        .get_workflow_steps()
        .domain_name(DOMAIN)
        .workflow_id(&always)
        .send()
        .await?;
    let statuses: Vec<_> = steps
        .items()
        .iter()
        .filter_map(|i| i.appflow_integration())
        .map(|s| s.status().clone())
        .collect();
    ensure!(
        statuses
            == [
                cp::Status::Complete,
                cp::Status::Failed,
                cp::Status::NotStarted
            ],
        "{statuses:?}"
    );
    // A redrive reusing the FlowName replaces the failed workflow's (idle, tagged) step flows.
    env.set_faults(&FaultPlan {
        run_duration_ms: flowpilot_sim::DurationRange { min: 20, max: 40 },
        ..FaultPlan::default()
    })
    .await?;
    let redrive = create(&env, "fp-always", ROLE, 2).await?;
    ensure!(settled(&env, &redrive).await? == cp::Status::Complete);
    ensure!(
        runs_of(&env, "fp-always-s1").await? == 5,
        "one more run of s1"
    );
    env.sim.shutdown().await;
    Ok(())
}
