//! Least privilege, proven against the deployed template: the template is deployed once as it
//! is and once per statement of the worker role's policy with that statement removed; each
//! time the worker's real adapters run the operations a workflow needs, with the deployed
//! worker role's credentials, through the IAM-enforcing simulator. As it is, everything is
//! allowed; without a statement, a named operation fails with AccessDenied naming the action
//! — so no statement is unnecessary and none is missing.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use chrono::{TimeDelta, Utc};
use flowpilot::aws::appflow::AppFlow;
use flowpilot::aws::health::HealthPublisher;
use flowpilot::aws::profiles::Profiles;
use flowpilot::aws::queue::Queue;
use flowpilot::aws::{Clients, error_chain};
use flowpilot::core::command::Command;
use flowpilot::core::decide::{Policy, decide};
use flowpilot::core::effect::{EffectKind, FlowDefinition};
use flowpilot::core::ids::WorkflowId;
use flowpilot::core::input::Input;
use flowpilot::core::model::Workflow;
use flowpilot::core::spec::SpecInput;
use flowpilot::metrics::Metrics;
use flowpilot::store::Store as _;
use flowpilot::store::dynamo::DynamoStore;
use flowpilot_sim::{EventsConfig, SimConfig};
use serde_json::Value;

use crate::support::e2e::{DOMAIN, KMS_ARN, OBJECT_TYPE, PROFILE, load_identities};
use crate::support::managed::{day_batches, flow_definition};
use crate::support::moto::template_json;
use crate::support::{
    ADMIN_PROFILE, DeployOptions, Moto, StackOutputs, WORKER_PROFILE, deploy_with,
    profile_sdk_config,
};

/// What the worker does, in the order a workflow does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    CreateBatchFlow,
    StartBatchFlow,
    LinkLiveFlow,
    RetireLiveFlow,
    SaveWorkflow,
    LoadWorkflow,
    ListActive,
    SendCommand,
    Receive,
    PublishHealth,
    /// `--engine managed`: CreateIntegrationWorkflow with AppFlowExecutionRole, DeleteWorkflow.
    ManagedWorkflow,
    /// `--engine managed`: a rebuild retiring the live flow a managed workflow created.
    RetireWorkflowFlow,
}

/// Each statement of the worker role, the operation that needs it, and the IAM action the
/// denial must name.
const STATEMENTS: &[(&str, Op, &str)] = &[
    ("WorkQueue", Op::SendCommand, "sqs:SendMessage"),
    ("StateTable", Op::SaveWorkflow, "dynamodb:PutItem"),
    ("PublishHealth", Op::PublishHealth, "events:PutEvents"),
    (
        "CreateManagedFlows",
        Op::CreateBatchFlow,
        "appflow:CreateFlow",
    ),
    (
        "TagManagedFlows",
        Op::CreateBatchFlow,
        "appflow:TagResource",
    ),
    (
        "UseConnectorProfiles",
        Op::CreateBatchFlow,
        "appflow:UseConnectorProfile",
    ),
    ("RunManagedFlows", Op::StartBatchFlow, "appflow:StartFlow"),
    (
        "LinkIntegrations",
        Op::LinkLiveFlow,
        "profile:PutIntegration",
    ),
    ("DomainKeyForFlows", Op::CreateBatchFlow, "kms:CreateGrant"),
    (
        "ManagedWorkflows",
        Op::ManagedWorkflow,
        "profile:CreateIntegrationWorkflow",
    ),
    ("PassExecutionRole", Op::ManagedWorkflow, "iam:PassRole"),
    (
        "RetireWorkflowFlows",
        Op::RetireWorkflowFlow,
        "appflow:StopFlow",
    ),
];

fn spec(from: &str, to: &str) -> anyhow::Result<flowpilot::core::spec::WorkflowSpec> {
    spec_with_threshold(from, to, "P1D")
}

/// A spec whose range is below `bulk_threshold` links its continuous integration at once.
fn spec_with_threshold(
    from: &str,
    to: &str,
    bulk_threshold: &str,
) -> anyhow::Result<flowpilot::core::spec::WorkflowSpec> {
    SpecInput {
        domain: Some(DOMAIN.into()),
        object_type: Some(OBJECT_TYPE.into()),
        connector: Some("salesforce".into()),
        connector_profile: Some(PROFILE.into()),
        object: Some("Account".into()),
        from: Some(from.into()),
        to: Some(to.into()),
        bulk_threshold: Some(bulk_threshold.into()),
        kms_arn: Some(KMS_ARN.into()),
        ..SpecInput::default()
    }
    .validate(Utc::now())
    .map_err(|e| anyhow!("{e}"))
}

/// The first create-flow definition `decide` asks for when `wf` starts.
fn created_flow(
    wf: &Workflow,
) -> anyhow::Result<(FlowDefinition, Vec<flowpilot::core::health::HealthEvent>)> {
    let t = decide(wf, Input::Start, Utc::now(), &Policy::default());
    let flow = t
        .effects
        .iter()
        .find_map(|e| match &e.kind {
            EffectKind::CreateFlow { flow } => Some(flow.clone()),
            _ => None,
        })
        .context("starting a workflow creates a flow")?;
    let events = t
        .effects
        .iter()
        .filter_map(|e| match &e.kind {
            EffectKind::Publish { event } => Some(event.clone()),
            _ => None,
        })
        .collect();
    Ok((flow, events))
}

/// Runs every operation as the deployed worker role; the first failure, if any, with its text.
async fn run_as_worker(sim_url: &str, stack: &StackOutputs, tag: &str) -> Result<(), (Op, String)> {
    let fail = |op: Op| move |e: &dyn std::fmt::Display| (op, e.to_string());
    // Store and queue errors keep the SDK error as their source: the denial is in the chain.
    let fail_chain = |op: Op| move |e: &(dyn std::error::Error + 'static)| (op, error_chain(e));
    let sdk = profile_sdk_config(sim_url, &stack.identities, WORKER_PROFILE).await;
    let clients = Clients::new(&sdk, &Metrics::new());
    let appflow = AppFlow::new(clients.appflow.clone());
    let profiles = Profiles::new(clients.profiles.clone());
    let store = DynamoStore::new(clients.dynamodb.clone(), &stack.table);
    let queue = Queue::new(clients.sqs.clone(), &stack.queue_url);
    let health = HealthPublisher::new(clients.events.clone(), &stack.health_bus);

    let id = WorkflowId::new(format!("iam-{tag}")).map_err(|e| fail(Op::SaveWorkflow)(&e))?;
    let bulk = Workflow::new(
        id.clone(),
        spec("2024-01-01", "2024-05-01").map_err(|e| fail(Op::SaveWorkflow)(&e))?,
        Utc::now(),
    );
    let (batch_flow, events) = created_flow(&bulk).map_err(|e| fail(Op::CreateBatchFlow)(&e))?;
    appflow
        .create_flow(&batch_flow)
        .await
        .map_err(|e| fail(Op::CreateBatchFlow)(&e.message))?;
    appflow
        .start_flow(&batch_flow.name, &format!("{id}:0:1"))
        .await
        .map_err(|e| fail(Op::StartBatchFlow)(&e.message))?;

    let recent = (Utc::now() - TimeDelta::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let live_id =
        WorkflowId::new(format!("iam-{tag}-live")).map_err(|e| fail(Op::LinkLiveFlow)(&e))?;
    let short = Workflow::new(
        live_id,
        spec(&recent, "2099-01-01").map_err(|e| fail(Op::LinkLiveFlow)(&e))?,
        Utc::now(),
    );
    let (live_flow, _) = created_flow(&short).map_err(|e| fail(Op::LinkLiveFlow)(&e))?;
    let arn = appflow
        .create_flow(&live_flow)
        .await
        .map_err(|e| fail(Op::LinkLiveFlow)(&e.message))?
        .ok_or((Op::LinkLiveFlow, "CreateFlow answered no ARN".to_owned()))?;
    profiles
        .put_integration(DOMAIN, OBJECT_TYPE, &arn)
        .await
        .map_err(|e| fail(Op::LinkLiveFlow)(&e.message))?;
    // What a rebuild does to the previous generation's scheduled flow before it deletes it: a
    // workflow without a bulk phase creates its scheduled live flow at once.
    let scheduled_id =
        WorkflowId::new(format!("iam-{tag}-sched")).map_err(|e| fail(Op::RetireLiveFlow)(&e))?;
    let scheduled = Workflow::new(
        scheduled_id,
        spec_with_threshold(&recent, "2099-01-01", "P100Y")
            .map_err(|e| fail(Op::RetireLiveFlow)(&e))?,
        Utc::now(),
    );
    let (scheduled_flow, _) = created_flow(&scheduled).map_err(|e| fail(Op::RetireLiveFlow)(&e))?;
    appflow
        .create_flow(&scheduled_flow)
        .await
        .map_err(|e| fail(Op::RetireLiveFlow)(&e.message))?;
    appflow
        .stop_flow(&scheduled_flow.name)
        .await
        .map_err(|e| fail(Op::RetireLiveFlow)(&e.message))?;
    appflow
        .describe_runs(&scheduled_flow.name)
        .await
        .map_err(|e| fail(Op::RetireLiveFlow)(&e.message))?;

    store
        .create(&bulk)
        .await
        .map_err(|e| fail_chain(Op::SaveWorkflow)(&e))?;
    store
        .load(&id)
        .await
        .map_err(|e| fail_chain(Op::LoadWorkflow)(&e))?;
    store
        .list_active()
        .await
        .map_err(|e| fail_chain(Op::ListActive)(&e))?;
    queue
        .send_command(
            &Command::Reconcile {
                workflow_id: id.clone(),
                reason: None,
            },
            Duration::ZERO,
        )
        .await
        .map_err(|e| fail_chain(Op::SendCommand)(&e))?;
    queue
        .receive(1, Duration::ZERO, Duration::from_secs(30))
        .await
        .map_err(|e| fail_chain(Op::Receive)(&e))?;
    for r in health.publish(&events).await {
        r.map_err(|e| fail(Op::PublishHealth)(&e.message))?;
    }
    managed_workflow(&sdk, stack, tag)
        .await
        .map_err(|e| (Op::ManagedWorkflow, format!("{e:#}")))?;

    // The live flow a completed managed workflow leaves (Customer Profiles' name and tag, made
    // here by the administrator), retired by a rebuild as the worker.
    let admin = AppFlow::new(aws_sdk_appflow::Client::new(
        &profile_sdk_config(sim_url, &stack.identities, ADMIN_PROFILE).await,
    ));
    let mut owned = scheduled_flow.clone();
    owned.name = format!("fp-iam-{tag}-m1-live");
    owned.client_token = format!("{}:owned", owned.client_token);
    owned.tags = [(
        "awsOwningService".to_owned(),
        "customer-profiles-integration-workflow".to_owned(),
    )]
    .into();
    admin
        .create_flow(&owned)
        .await
        .map_err(|e| fail(Op::RetireWorkflowFlow)(&format!("admin CreateFlow: {}", e.message)))?;
    appflow
        .stop_flow(&owned.name)
        .await
        .map_err(|e| fail(Op::RetireWorkflowFlow)(&e.message))?;
    appflow
        .describe_runs(&owned.name)
        .await
        .map_err(|e| fail(Op::RetireWorkflowFlow)(&e.message))?;
    appflow
        .delete_flow(&owned.name)
        .await
        .map_err(|e| fail(Op::RetireWorkflowFlow)(&e.message))?;
    Ok(())
}

/// What `--engine managed` asks of the worker role: hand AppFlowExecutionRole to Customer
/// Profiles in CreateIntegrationWorkflow, then delete the workflow (the execution role's own
/// permissions are tests/e2e/managed_iam.rs's subject).
async fn managed_workflow(
    sdk: &aws_config::SdkConfig,
    stack: &StackOutputs,
    tag: &str,
) -> anyhow::Result<()> {
    use aws_sdk_customerprofiles::error::DisplayErrorContext;
    use aws_sdk_customerprofiles::types::{AppflowIntegration, IntegrationConfig, WorkflowType};
    let cp = aws_sdk_customerprofiles::Client::new(sdk);
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
                            &format!("fp-iam-{tag}-managed"),
                            PROFILE,
                            KMS_ARN,
                        )?)
                        .set_batches(Some(day_batches(1)?))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow!("CreateIntegrationWorkflow: {}", DisplayErrorContext(e)))?;
    // A completed workflow's integration is found by its WorkflowId (ListIntegrations).
    Profiles::new(cp.clone())
        .find_workflow_integration(DOMAIN, created.workflow_id())
        .await
        .map_err(|e| anyhow!("ListIntegrations: {}", e.message))?;
    cp.delete_workflow()
        .domain_name(DOMAIN)
        .workflow_id(created.workflow_id())
        .send()
        .await
        .map_err(|e| anyhow!("DeleteWorkflow: {}", DisplayErrorContext(e)))?;
    Ok(())
}

/// The worker role's statements in the template, by Sid.
fn worker_sids(template: &Value) -> anyhow::Result<Vec<String>> {
    template["Resources"]["WorkerTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .context("WorkerTaskRole has no inline policy statements")?
        .iter()
        .map(|s| s["Sid"].as_str().map(str::to_owned).context("a statement without Sid"))
        .collect()
}

fn without_statement(template: &Value, sid: &str) -> anyhow::Result<Value> {
    let mut t = template.clone();
    let statements = t["Resources"]["WorkerTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
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

/// The connector profile, domain and object type the operations use, made by the admin.
pub(crate) async fn admin_setup(sim_url: &str, stack: &StackOutputs) -> anyhow::Result<()> {
    let admin = profile_sdk_config(sim_url, &stack.identities, ADMIN_PROFILE).await;
    use aws_sdk_appflow::types::{
        ConnectionMode, ConnectorProfileConfig, ConnectorProfileProperties, ConnectorType,
        SalesforceConnectorProfileProperties,
    };
    aws_sdk_appflow::Client::new(&admin)
        .create_connector_profile()
        .connector_profile_name(PROFILE)
        .connector_type(ConnectorType::Salesforce)
        .connection_mode(ConnectionMode::Public)
        .connector_profile_config(
            ConnectorProfileConfig::builder()
                .connector_profile_properties(
                    ConnectorProfileProperties::builder()
                        .salesforce(
                            SalesforceConnectorProfileProperties::builder()
                                .instance_url("https://example.my.salesforce.com")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .context("CreateConnectorProfile as admin")?;
    let cp = aws_sdk_customerprofiles::Client::new(&admin);
    cp.create_domain()
        .domain_name(DOMAIN)
        .default_expiration_days(366)
        .default_encryption_key(KMS_ARN)
        .send()
        .await
        .context("CreateDomain as admin")?;
    cp.put_profile_object_type()
        .domain_name(DOMAIN)
        .object_type_name(OBJECT_TYPE)
        .description("Salesforce accounts")
        .send()
        .await
        .context("PutProfileObjectType as admin")?;
    Ok(())
}

#[tokio::test]
async fn each_worker_role_statement_is_needed_by_a_named_operation() -> anyhow::Result<()> {
    let template = template_json(None).await?;
    let mut sids = worker_sids(&template)?;
    sids.sort();
    let mut covered: Vec<String> = STATEMENTS.iter().map(|(s, ..)| (*s).to_owned()).collect();
    covered.sort();
    ensure!(
        sids == covered,
        "the worker role's statements {sids:?} and the operations table {covered:?} differ: \
         give every statement a named operation (or remove it)"
    );

    let moto = Moto::start().await?;
    let sim = flowpilot_sim::start(SimConfig {
        events: EventsConfig {
            disabled: false,
            endpoint_url: Some(moto.url.clone()),
            access_key_id: Some(crate::support::ACCESS_KEY_ID.to_owned()),
            secret_access_key: Some(crate::support::SECRET_ACCESS_KEY.to_owned()),
        },
        ..SimConfig::default()
    })
    .await?;
    let sim_url = sim.url();
    let scratch = crate::support::scratch_dir().join(format!("iam-mutations-{}", moto.port));
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

    let control = deploy("control".to_owned(), template.clone()).await?;
    load_identities(&sim_url, &control).await?;
    admin_setup(&sim_url, &control).await?;
    if let Err((op, e)) = run_as_worker(&sim_url, &control, "control").await {
        bail!("with the template as it is, {op:?} failed: {e}");
    }

    let mut report = Vec::new();
    for (n, (sid, op, action)) in STATEMENTS.iter().enumerate() {
        let name = format!("m{n}");
        let stack = deploy(name.clone(), without_statement(&template, sid)?).await?;
        load_identities(&sim_url, &stack).await?;
        let outcome = run_as_worker(&sim_url, &stack, &name).await;
        let Err((failed_op, text)) = outcome else {
            bail!("without statement {sid} every operation still succeeded: it is unnecessary");
        };
        ensure!(
            failed_op == *op && text.contains(action) && text.contains("not authorized"),
            "without {sid}: expected {op:?} to be denied naming {action}, got {failed_op:?}: {text}"
        );
        // Store and queue errors name the AWS error code in their own message (issue 11).
        let own_message = text.split("): ").next().unwrap_or_default();
        ensure!(
            !matches!(op, Op::SaveWorkflow | Op::SendCommand)
                || own_message.contains("AccessDenied"),
            "without {sid}: the error's own message does not name the AWS error code: {text}"
        );
        report.push(format!("{sid:<22} → {failed_op:?} denied ({action})"));
    }
    println!("{}", report.join("\n"));
    sim.shutdown().await;
    Ok(())
}

/// The function's extra statements in the template (WorkerFunctionPolicy), without `sid`.
fn without_function_statement(template: &Value, sid: &str) -> anyhow::Result<Value> {
    let mut t = template.clone();
    let statements =
        t["Resources"]["WorkerFunctionPolicy"]["Properties"]["PolicyDocument"]["Statement"]
            .as_array_mut()
            .context("WorkerFunctionPolicy statements")?;
    let before = statements.len();
    statements.retain(|s| s["Sid"] != sid);
    ensure!(
        statements.len() + 1 == before,
        "statement {sid} not found exactly once"
    );
    Ok(t)
}

/// What the event source mapping does with the function's role: read the queue's attributes
/// (on creation), receive, delete.
async fn poll_as_mapping(sim_url: &str, stack: &StackOutputs) -> anyhow::Result<()> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let sdk = profile_sdk_config(sim_url, &stack.identities, WORKER_PROFILE).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    sqs.get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "GetQueueAttributes: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    let out = sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .wait_time_seconds(0)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "ReceiveMessage: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    for m in out.messages() {
        sqs.delete_message()
            .queue_url(&stack.queue_url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "DeleteMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?;
    }
    Ok(())
}

/// WorkerMode lambda: the function holds the worker role (assumed as Lambda assumes it), so
/// every operation above is allowed by the statements proven one by one in ECS mode; its one
/// extra statement the local world can exercise, EventSourceMapping, is what lets the
/// mapping poll (without it GetQueueAttributes is denied). FunctionLogs is used by the Lambda
/// service itself, which nothing local plays (README, IAM).
#[tokio::test]
async fn the_function_role_is_the_worker_role_plus_what_the_event_source_mapping_needs()
-> anyhow::Result<()> {
    let template = template_json(None).await?;
    let moto = Moto::start().await?;
    let sim = flowpilot_sim::start(SimConfig {
        events: EventsConfig {
            disabled: false,
            endpoint_url: Some(moto.url.clone()),
            access_key_id: Some(crate::support::ACCESS_KEY_ID.to_owned()),
            secret_access_key: Some(crate::support::SECRET_ACCESS_KEY.to_owned()),
        },
        ..SimConfig::default()
    })
    .await?;
    let sim_url = sim.url();
    let scratch = crate::support::scratch_dir().join(format!("iam-lambda-{}", moto.port));
    std::fs::create_dir_all(&scratch)?;
    let deploy = |name: &str, json: Value| {
        let (moto, scratch, name) = (&moto, &scratch, name.to_owned());
        async move {
            let path = scratch.join(format!("{name}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(&json)?)?;
            let mut opts = DeployOptions::standard(moto);
            opts.template = Some(path);
            opts.stack_name = name.clone();
            opts.name_prefix = name.clone();
            opts.state_dir = scratch.join(&name);
            opts.worker_mode = "lambda";
            deploy_with(moto, &opts).await
        }
    };

    let control = deploy("lcontrol", template.clone()).await?;
    load_identities(&sim_url, &control).await?;
    admin_setup(&sim_url, &control).await?;
    if let Err((op, e)) = run_as_worker(&sim_url, &control, "lcontrol").await {
        bail!("as the function's role, {op:?} failed: {e}");
    }
    poll_as_mapping(&sim_url, &control)
        .await
        .context("the mapping polling with the function's role")?;

    let stack = deploy(
        "lnoesm",
        without_function_statement(&template, "EventSourceMapping")?,
    )
    .await?;
    load_identities(&sim_url, &stack).await?;
    let denied = poll_as_mapping(&sim_url, &stack).await;
    let text = format!("{denied:?}");
    ensure!(
        text.contains("sqs:GetQueueAttributes") && text.contains("not authorized"),
        "without EventSourceMapping the mapping should be denied GetQueueAttributes, got {text}"
    );
    println!(
        "WorkerMode lambda: worker operations allowed; without EventSourceMapping → GetQueueAttributes denied"
    );
    sim.shutdown().await;
    Ok(())
}
