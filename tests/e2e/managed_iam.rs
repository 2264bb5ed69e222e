//! The managed engine's execution role is exactly sufficient: with IAM enforced, the worker
//! role calls CreateIntegrationWorkflow with the deployed `AppFlowExecutionRole`, and the
//! simulator runs the workflow *as that role* (every CreateFlow, TagResource, StartFlow, KMS
//! grant and PutIntegration an IAM check of the role's policy). As deployed, the workflow
//! completes and creates its continuous integration; with any one statement of the role's
//! policy removed from the template, it ends FAILED naming a denied action of that statement.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use aws_sdk_customerprofiles::error::DisplayErrorContext;
use aws_sdk_customerprofiles::types::{
    AppflowIntegration, IntegrationConfig, Status, WorkflowType,
};
use flowpilot_sim::{DurationRange, EventsConfig, FaultPlan, SimConfig};
use serde_json::Value;

use crate::iam::admin_setup;
use crate::support::e2e::{DOMAIN, KMS_ARN, OBJECT_TYPE, PROFILE, load_identities};
use crate::support::managed::{day_batches, flow_definition};
use crate::support::moto::template_json;
use crate::support::{
    ADMIN_PROFILE, DeployOptions, Moto, StackOutputs, WORKER_PROFILE, deploy_with, drain_queue,
    poll_until, profile_sdk_config,
};

const ROLE: &str = "AppFlowExecutionRole";
const BATCHES: u32 = 3;

fn statements(template: &Value) -> anyhow::Result<&Vec<Value>> {
    template["Resources"][ROLE]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .context("AppFlowExecutionRole has no inline policy statements")
}

/// The statement's actions (a string or a list in the template).
fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The statement's `kms:ViaService` condition, resolved for the stack's region.
fn via_service(statement: &Value) -> Option<String> {
    let v = &statement["Condition"]["StringEquals"]["kms:ViaService"];
    let sub = v.as_str().or_else(|| v["Fn::Sub"].as_str())?;
    Some(sub.replace("${AWS::Region}", crate::support::REGION))
}

fn without_statement(template: &Value, sid: &str) -> anyhow::Result<Value> {
    let mut t = template.clone();
    let statements =
        t["Resources"][ROLE]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array_mut()
            .context("statements")?;
    let before = statements.len();
    statements.retain(|s| s["Sid"] != sid);
    ensure!(
        statements.len() + 1 == before,
        "statement {sid} not found exactly once"
    );
    Ok(t)
}

/// As the worker role: CreateIntegrationWorkflow with the stack's execution role, then
/// GetWorkflow until it settles. Returns (workflow id, status, ErrorDescription).
async fn run_managed(
    sim_url: &str,
    stack: &StackOutputs,
    tag: &str,
) -> anyhow::Result<(String, Status, String)> {
    let sdk = profile_sdk_config(sim_url, &stack.identities, WORKER_PROFILE).await;
    let cp = aws_sdk_customerprofiles::Client::new(&sdk);
    let created = cp
        .create_integration_workflow()
        .domain_name(DOMAIN)
        .workflow_type(WorkflowType::AppflowIntegration)
        .object_type_name(OBJECT_TYPE)
        .role_arn(&stack.execution_role_arn)
        .integration_config(
            IntegrationConfig::builder()
                .appflow_integration(
                    AppflowIntegration::builder()
                        .flow_definition(flow_definition(
                            &format!("fp-managed-{tag}"),
                            PROFILE,
                            KMS_ARN,
                        )?)
                        .set_batches(Some(day_batches(BATCHES)?))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow!("CreateIntegrationWorkflow: {}", DisplayErrorContext(e)))?;
    let id = created.workflow_id().to_owned();
    let (status, error) = poll_until(Duration::from_secs(30), || async {
        let w = cp
            .get_workflow()
            .domain_name(DOMAIN)
            .workflow_id(&id)
            .send()
            .await
            .map_err(|e| anyhow!("GetWorkflow: {}", DisplayErrorContext(e)))?;
        Ok(w.status()
            .filter(|s| matches!(s, Status::Complete | Status::Failed))
            .map(|s| {
                (
                    s.clone(),
                    w.error_description().unwrap_or_default().to_owned(),
                )
            }))
    })
    .await
    .with_context(|| format!("workflow {id} ({tag}) never settled"))?;
    Ok((id, status, error))
}

#[tokio::test]
async fn the_execution_role_policy_is_exactly_sufficient_for_the_managed_workflow()
-> anyhow::Result<()> {
    let template = template_json(None).await?;
    let table: Vec<(String, Vec<String>)> = statements(&template)?
        .iter()
        .map(|s| {
            let sid = s["Sid"].as_str().context("a statement without Sid")?;
            Ok((sid.to_owned(), actions(s)))
        })
        .collect::<anyhow::Result<_>>()?;
    let sids: Vec<&str> = table.iter().map(|(s, _)| s.as_str()).collect();
    ensure!(
        sids == [
            "CreateFlowResources",
            "UseConnectorResources",
            "AccessFlowResources",
            "KMSAppflow",
            "KMSCustomerProfiles"
        ],
        "AppFlowExecutionRole's statements are the brief's five, in its order: {sids:?}"
    );

    let moto = Moto::start().await?;
    let sim = flowpilot_sim::start(SimConfig {
        events: EventsConfig {
            disabled: false,
            endpoint_url: Some(moto.url.clone()),
            access_key_id: Some(crate::support::ACCESS_KEY_ID.to_owned()),
            secret_access_key: Some(crate::support::SECRET_ACCESS_KEY.to_owned()),
        },
        faults: FaultPlan {
            run_duration_ms: DurationRange { min: 20, max: 60 },
            ..FaultPlan::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let sim_url = sim.url();
    let scratch = crate::support::scratch_dir().join(format!("managed-iam-{}", moto.port));
    std::fs::create_dir_all(&scratch)?;
    let deploy = |name: String, json: Value| {
        let (moto, scratch) = (&moto, &scratch);
        async move {
            let path = scratch.join(format!("{name}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(&json)?)?;
            let mut opts = DeployOptions::standard(moto);
            opts.template = Some(path);
            opts.stack_name = name.clone();
            opts.name_prefix = name.clone();
            opts.state_dir = scratch.join(&name);
            deploy_with(moto, &opts).await
        }
    };

    // As deployed: the workflow completes and leaves its continuous integration behind.
    let control = deploy("mcontrol".to_owned(), template.clone()).await?;
    load_identities(&sim_url, &control).await?;
    admin_setup(&sim_url, &control).await?;
    let (id, status, error) = run_managed(&sim_url, &control, "control").await?;
    if status != Status::Complete {
        bail!("with AppFlowExecutionRole as deployed the workflow ended {status:?}: {error}");
    }
    let admin = profile_sdk_config(&sim_url, &control.identities, ADMIN_PROFILE).await;
    let integrations = aws_sdk_customerprofiles::Client::new(&admin)
        .list_integrations()
        .domain_name(DOMAIN)
        .send()
        .await?;
    let live = integrations
        .items()
        .iter()
        .find(|i| i.workflow_id() == Some(id.as_str()))
        .context("no integration carries the completed workflow's WorkflowId")?;
    ensure!(
        live.uri().ends_with(":flow/fp-managed-control-live"),
        "the continuous integration's Uri is its live flow: {live:?}"
    );

    // The steps' flows report their runs like any flow, and flowpilot's AppFlow rule routes
    // them (flow names `fp-...-s{n}`) to the work queue: what the managed engine listens to.
    let sqs = aws_sdk_sqs::Client::new(&crate::support::sdk_config(&moto.url).await);
    let reported = |bodies: &[Value], n: u32| {
        bodies.iter().any(|b| {
            b["detail-type"] == "AppFlow End Flow Run Report"
                && b["detail"]["flow-name"] == format!("fp-managed-control-s{n}")
        })
    };
    let bodies = drain_queue(
        &sqs,
        &control.queue_url,
        |got| (0..BATCHES).all(|n| reported(got, n)),
        Duration::from_secs(20),
    )
    .await?;
    ensure!(
        (0..BATCHES).all(|n| reported(&bodies, n)),
        "every step's End report reaches the work queue: {bodies:?}"
    );

    // Without each statement in turn: FAILED, naming one of that statement's actions, denied
    // to the execution role.
    let mut report = Vec::new();
    for (n, (sid, actions)) in table.iter().enumerate() {
        let name = format!("x{n}");
        let stack = deploy(name.clone(), without_statement(&template, sid)?).await?;
        load_identities(&sim_url, &stack).await?;
        let (_, status, error) = run_managed(&sim_url, &stack, &name).await?;
        let role_name = stack
            .execution_role_arn
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let denied = actions
            .iter()
            .find(|a| error.contains(&format!("perform: {a} ")));
        // The two KMS statements share kms:CreateGrant: the grant denied must be the one
        // made through this statement's service.
        let via = via_service(&statements(&template)?[n]);
        ensure!(
            via.as_ref()
                .is_none_or(|v| error.contains(&format!("(via {v})"))),
            "without {sid}: the denied grant is not the one via {via:?}: {error}"
        );
        ensure!(
            status == Status::Failed
                && error.contains("AccessDenied")
                && error.contains(role_name)
                && denied.is_some(),
            "without {sid}: expected FAILED naming one of {actions:?} denied to {role_name}, got {status:?}: {error}"
        );
        report.push(format!(
            "{sid:<22} → FAILED ({})",
            denied.map_or("", String::as_str)
        ));
    }
    println!("{}", report.join("\n"));
    sim.shutdown().await;
    Ok(())
}
