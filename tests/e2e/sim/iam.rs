//! IAM in the simulator, through the real SDK clients (part of the `sim` test binary):
//! a restricted role assumed through the simulator's STS against AppFlow and Customer
//! Profiles, the enforcing front for SQS / DynamoDB / EventBridge before moto, and trust
//! policies / unknown keys.

use aws_config::SdkConfig;
use aws_sdk_sqs::config::Credentials;
use flowpilot_sim::IdentityDocument;

use super::*;

const ACCOUNT: &str = crate::support::ACCOUNT_ID;
const ADMIN_ARN: &str = "arn:aws:iam::123456789012:user/flowpilot-admin";
/// The local stand-in for the ECS agent (service principal `ecs-tasks.amazonaws.com`).
const ECS_KEY: &str = "AKIAECSAGENTSTANDIN1";
const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/domain-key";

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

fn flow_arn(name: &str) -> String {
    format!("arn:aws:appflow:us-east-1:{ACCOUNT}:flow/{name}")
}

/// A role the ECS stand-in (like the template's task role) and the administrator may assume.
fn role(name: &str, statements: Value) -> Value {
    json!({
        "arn": role_arn(name),
        "trust_policy": { "Version": "2012-10-17", "Statement": [
            { "Effect": "Allow", "Principal": { "Service": "ecs-tasks.amazonaws.com" },
              "Action": "sts:AssumeRole",
              "Condition": { "StringEquals": { "aws:SourceAccount": ACCOUNT } } },
            { "Effect": "Allow", "Principal": { "AWS": ADMIN_ARN }, "Action": "sts:AssumeRole" } ] },
        "policies": [{ "name": name, "document": { "Version": "2012-10-17", "Statement": statements } }]
    })
}

/// The administrator, the ECS stand-in and `roles`.
fn identities(roles: Vec<Value>) -> IdentityDocument {
    let mut doc = json!(crate::support::admin_identities(ADMIN_KEY));
    doc["services"] = json!([{ "service": "ecs-tasks.amazonaws.com",
        "access_key_id": ECS_KEY, "secret_access_key": "ecs-secret" }]);
    doc["roles"] = Value::from(roles);
    serde_json::from_value(doc).unwrap()
}

async fn load(env: &Env, doc: &IdentityDocument) -> anyhow::Result<()> {
    let resp = env
        .http
        .post(format!("{}/_sim/iam", env.sim.url()))
        .json(doc)
        .send()
        .await?;
    ensure!(
        resp.status().is_success(),
        "POST /_sim/iam: {}",
        resp.status()
    );
    Ok(())
}

/// SDK configuration whose credentials come from `sts:AssumeRole` on `role`, called at the
/// simulator by the administrator (the way a shared-config profile with `role_arn` +
/// `source_profile` does it).
async fn assume(url: &str, role: &str) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn(role))
        .session_name("flowpilot-tests")
        .configure(&admin_sdk(url).await)
        .build()
        .await;
    crate::support::sdk_config_with(url, provider).await
}

/// flowpilot's worker policy in the shape the SAR allows: `appflow:CreateFlow` has no
/// resource type, so the request tag (not the ARN) is what limits it.
fn worker_statements(create_flow_resource: &str, kms: bool) -> Value {
    let flows = format!("arn:aws:appflow:us-east-1:{ACCOUNT}:flow/fp-*");
    let mut s = vec![
        json!({ "Sid": "CreateManagedFlows", "Effect": "Allow", "Action": "appflow:CreateFlow",
            "Resource": create_flow_resource,
            "Condition": { "StringEquals": { "aws:RequestTag/flowpilot:managed": "true" } } }),
        json!({ "Sid": "TagManagedFlows", "Effect": "Allow", "Action": "appflow:TagResource",
            "Resource": flows,
            "Condition": { "StringEquals": { "aws:RequestTag/flowpilot:managed": "true" } } }),
        json!({ "Sid": "UseConnectorProfiles", "Effect": "Allow", "Action": "appflow:UseConnectorProfile",
            "Resource": format!("arn:aws:appflow:us-east-1:{ACCOUNT}:connectorprofile/*") }),
        json!({ "Sid": "RunManagedFlows", "Effect": "Allow",
            "Action": ["appflow:DescribeFlow", "appflow:DescribeFlowExecutionRecords",
                       "appflow:StartFlow", "appflow:DeleteFlow"],
            "Resource": flows,
            "Condition": { "StringEquals": { "aws:ResourceTag/flowpilot:managed": "true" } } }),
        json!({ "Sid": "Domain", "Effect": "Allow",
            "Action": ["profile:GetDomain", "profile:PutIntegration", "profile:GetIntegration"],
            "Resource": [format!("arn:aws:profile:us-east-1:{ACCOUNT}:domains/{DOMAIN}"),
                         format!("arn:aws:profile:us-east-1:{ACCOUNT}:domains/{DOMAIN}/*")] }),
    ];
    if kms {
        s.push(json!({ "Sid": "DomainKeyForFlows", "Effect": "Allow", "Action": "kms:CreateGrant",
            "Resource": KMS_KEY,
            "Condition": { "StringEquals": { "kms:ViaService": "appflow.us-east-1.amazonaws.com" } } }));
    }
    Value::from(s)
}

fn flow_definition(name: &str) -> anyhow::Result<cp::FlowDefinition> {
    Ok(cp::FlowDefinition::builder()
        .flow_name(name)
        .kms_arn(KMS_KEY)
        .source_flow_config(
            cp::SourceFlowConfig::builder()
                .connector_type(cp::SourceConnectorType::Salesforce)
                .connector_profile_name(PROFILE)
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
                .build()?,
        )
        .trigger_config(
            cp::TriggerConfig::builder()
                .trigger_type(cp::TriggerType::Ondemand)
                .build()?,
        )
        .build()?)
}

fn managed(b: CreateFlowFluentBuilder) -> CreateFlowFluentBuilder {
    b.tags("flowpilot:managed", "true")
}

/// (a) A least-privilege role assumed through the simulator's STS: tag-based CreateFlow /
/// StartFlow, the KMS grant AppFlow makes, and PutIntegration's on-behalf-of CreateFlow.
#[tokio::test]
async fn restricted_role_is_held_to_tags_grants_and_on_behalf_of_actions() -> anyhow::Result<()> {
    let mut config = quiet_config();
    config.iam.identities = Some(identities(vec![role(
        "worker",
        worker_statements("*", true),
    )]));
    let env = env_with(config).await?;
    let worker = assume(&env.sim.url(), "worker").await;
    let appflow = aws_sdk_appflow::Client::new(&worker);
    let profiles = aws_sdk_customerprofiles::Client::new(&worker);

    let me = aws_sdk_sts::Client::new(&worker)
        .get_caller_identity()
        .send()
        .await?;
    assert_eq!(
        me.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/worker/flowpilot-tests")
    );
    assert_eq!(me.account(), Some(ACCOUNT));

    let (lo, hi) = (ms(2024, 1, 1), ms(2024, 1, 2));
    managed(batch_flow(&appflow, "fp-wf9-b0000", lo, hi))
        .send()
        .await?;

    // Untagged (or wrongly tagged) CreateFlow: denied, naming the action and the flow.
    for tags in [None, Some("false")] {
        let mut req = batch_flow(&appflow, "fp-wf9-b0001", lo, hi);
        if let Some(v) = tags {
            req = req.tags("flowpilot:managed", v);
        }
        let err = service_error(req.send()).await;
        assert!(err.is_access_denied_exception(), "{err:?}");
        let msg = err.message().unwrap_or_default();
        assert!(
            msg.starts_with("User: arn:aws:sts::123456789012:assumed-role/worker/flowpilot-tests is not authorized to perform: appflow:CreateFlow on resource: ")
                && msg.contains(&flow_arn("fp-wf9-b0001"))
                && msg.ends_with("because no identity-based policy allows the appflow:CreateFlow action"),
            "{msg}"
        );
    }

    // StartFlow needs the flow's own tag: the administrator's untagged flow is off limits,
    // and so is a flow that does not exist (authorization comes before the lookup).
    create_batch_flow(&env, "fp-wf9-b0002", lo, hi).await?;
    for name in ["fp-wf9-b0002", "fp-wf9-missing"] {
        let err = service_error(appflow.start_flow().flow_name(name).send()).await;
        assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");
        let msg = err.message().unwrap_or_default();
        assert!(
            msg.contains("appflow:StartFlow") && msg.contains(&flow_arn(name)),
            "{msg}"
        );
    }
    appflow
        .start_flow()
        .flow_name("fp-wf9-b0000")
        .send()
        .await?;
    appflow
        .describe_flow()
        .flow_name("fp-wf9-b0000")
        .send()
        .await?;

    // A customer managed key: AppFlow's grant is allowed by the kms statement.
    managed(batch_flow(&appflow, "fp-wf9-b0003", lo, hi).kms_arn(KMS_KEY))
        .send()
        .await?;

    // PutIntegration + FlowDefinition: Customer Profiles creates the flow with the caller's
    // permissions, and a FlowDefinition cannot carry the tag the policy demands.
    let err = service_error(
        profiles
            .put_integration()
            .domain_name(DOMAIN)
            .object_type_name("Account")
            .flow_definition(flow_definition("fp-wf9-live")?)
            .send(),
    )
    .await;
    assert!(err.is_access_denied_exception(), "{err:?}");
    let msg = err.message().unwrap_or_default();
    assert!(
        msg.contains("appflow:CreateFlow") && msg.contains(&flow_arn("fp-wf9-live")),
        "{msg}"
    );
    let flows = env.admin("flows").await?;
    assert!(
        !flows.to_string().contains("fp-wf9-live"),
        "no flow was created: {flows}"
    );

    // Linking the tagged flow the role created is allowed by profile:PutIntegration.
    let linked = profiles
        .put_integration()
        .domain_name(DOMAIN)
        .object_type_name("Account")
        .uri(flow_arn("fp-wf9-b0000"))
        .send()
        .await?;
    assert_eq!(linked.uri(), flow_arn("fp-wf9-b0000"));
    profiles
        .get_integration()
        .domain_name(DOMAIN)
        .uri(flow_arn("fp-wf9-b0000"))
        .send()
        .await?;
    // ... but only into the domain the flow writes to (checked as the administrator).
    env.profiles
        .create_domain()
        .domain_name("other")
        .default_expiration_days(30)
        .send()
        .await?;
    let err = service_error(
        env.profiles
            .put_integration()
            .domain_name("other")
            .object_type_name("Account")
            .uri(flow_arn("fp-wf9-b0000"))
            .send(),
    )
    .await;
    assert!(err.is_bad_request_exception(), "{err:?}");

    // The same session, after the kms statement is removed from the role: the grant is
    // denied, and CreateFlow without a key still works.
    load(
        &env,
        &identities(vec![role("worker", worker_statements("*", false))]),
    )
    .await?;
    let err = service_error(
        managed(batch_flow(&appflow, "fp-wf9-b0004", lo, hi).kms_arn(KMS_KEY)).send(),
    )
    .await;
    assert!(err.is_access_denied_exception(), "{err:?}");
    let msg = err.message().unwrap_or_default();
    assert!(
        msg.contains("kms:CreateGrant") && msg.contains(KMS_KEY),
        "{msg}"
    );
    managed(batch_flow(&appflow, "fp-wf9-b0005", lo, hi))
        .send()
        .await?;

    // The Service Authorization Reference gives appflow:CreateFlow no resource type: a
    // statement scoped to flow ARNs never matches it.
    let scoped = flow_arn("fp-*");
    load(
        &env,
        &identities(vec![role("worker", worker_statements(&scoped, true))]),
    )
    .await?;
    let err = service_error(managed(batch_flow(&appflow, "fp-wf9-b0006", lo, hi)).send()).await;
    assert!(err.is_access_denied_exception(), "{err:?}");

    let denials = env.admin("iam").await?["recent_denials"].clone();
    assert!(
        denials.as_array().is_some_and(|d| d.len() >= 6),
        "{denials}"
    );
    env.sim.shutdown().await;
    Ok(())
}

/// (b) SQS, DynamoDB and EventBridge through the simulator's front to moto: allowed on the
/// right ARNs (and conditions), denied with each service's own code otherwise; an explicit
/// Deny wins over an Allow.
#[tokio::test]
async fn front_enforces_iam_for_sqs_dynamodb_and_eventbridge() -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType,
    };
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;

    let moto = crate::support::Moto::start().await?;
    let moto_sdk = crate::support::sdk_config(&moto.url).await;
    let queue_url = aws_sdk_sqs::Client::new(&moto_sdk)
        .create_queue()
        .queue_name("work")
        .send()
        .await?
        .queue_url()
        .context("queue url")?
        .to_owned();
    aws_sdk_dynamodb::Client::new(&moto_sdk)
        .create_table()
        .table_name("state")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await?;
    aws_sdk_eventbridge::Client::new(&moto_sdk)
        .create_event_bus()
        .name("health")
        .send()
        .await?;

    let queue = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:work");
    let table = format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/state");
    let bus = format!("arn:aws:events:us-east-1:{ACCOUNT}:event-bus/health");
    let allow = |queue: &str, table: &str, bus: &str| {
        vec![
            json!({ "Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"], "Resource": queue }),
            json!({ "Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:GetItem"], "Resource": table }),
            json!({ "Effect": "Allow", "Action": "events:PutEvents", "Resource": bus,
                "Condition": { "StringEquals": { "events:source": "flowpilot" } } }),
        ]
    };
    let mut deny = allow(&queue, &table, &bus);
    deny.push(json!({ "Effect": "Deny", "Action": ["sqs:SendMessage", "dynamodb:PutItem", "events:PutEvents"], "Resource": "*" }));
    let mut config = quiet_config();
    config.iam.upstream_url = Some(moto.url.clone());
    // The fault plan is for AppFlow / Customer Profiles only: STS and the front ignore it.
    config.faults.throttle_rate = 1.0;
    config.iam.identities = Some(identities(vec![
        role("front-ok", Value::from(allow(&queue, &table, &bus))),
        role(
            "front-other",
            Value::from(allow(
                &format!("arn:aws:sqs:us-east-1:{ACCOUNT}:other"),
                &format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/other"),
                &format!("arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"),
            )),
        ),
        role("front-deny", Value::from(deny)),
    ]));
    let sim = flowpilot_sim::start(config).await?;
    let throttled = reqwest::Client::new()
        .post(format!("{}/list-flows", sim.url()))
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={ADMIN_KEY}/20240101/us-east-1/appflow/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(
        throttled.status().as_u16(),
        429,
        "the plan is active for AppFlow"
    );

    let item = || {
        [("pk".to_owned(), AttributeValue::S("wf-1".into()))]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
    };
    let event = |source: &str| {
        PutEventsRequestEntry::builder()
            .event_bus_name("health")
            .source(source)
            .detail_type("Workflow Failed")
            .detail("{}")
            .build()
    };

    // Allowed: the calls reach moto and moto's answers come back.
    let ok = assume(&sim.url(), "front-ok").await;
    let (sqs, ddb, events) = (
        aws_sdk_sqs::Client::new(&ok),
        aws_sdk_dynamodb::Client::new(&ok),
        aws_sdk_eventbridge::Client::new(&ok),
    );
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("hello")
        .send()
        .await?;
    let got = sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(1)
        .send()
        .await?;
    assert_eq!(got.messages().first().and_then(|m| m.body()), Some("hello"));
    ddb.put_item()
        .table_name("state")
        .set_item(Some(item()))
        .send()
        .await?;
    let read = ddb
        .get_item()
        .table_name("state")
        .set_key(Some(item()))
        .send()
        .await?;
    assert_eq!(
        read.item().and_then(|i| i.get("pk")),
        Some(&AttributeValue::S("wf-1".into()))
    );
    let put = events
        .put_events()
        .entries(event("flowpilot"))
        .send()
        .await?;
    assert_eq!(put.failed_entry_count(), 0);
    // The events:source condition: another source is denied.
    let err = events
        .put_events()
        .entries(event("someone-else"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");

    // The same actions granted on other ARNs do not cover these resources.
    for (role, explicit) in [("front-other", false), ("front-deny", true)] {
        let sdk = assume(&sim.url(), role).await;
        let reason = if explicit {
            "with an explicit deny in an identity-based policy"
        } else {
            "because no identity-based policy allows"
        };
        let e = aws_sdk_sqs::Client::new(&sdk)
            .send_message()
            .queue_url(&queue_url)
            .message_body("x")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(e.code(), Some("AccessDenied"), "{role}: {e:?}");
        let m = e.message().unwrap_or_default();
        assert!(
            m.contains("sqs:SendMessage") && m.contains(&queue) && m.contains(reason),
            "{m}"
        );
        let e = aws_sdk_dynamodb::Client::new(&sdk)
            .put_item()
            .table_name("state")
            .set_item(Some(item()))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(e.code(), Some("AccessDeniedException"), "{role}: {e:?}");
        let m = e.message().unwrap_or_default();
        assert!(
            m.contains("dynamodb:PutItem") && m.contains(&table) && m.contains(reason),
            "{m}"
        );
        let e = aws_sdk_eventbridge::Client::new(&sdk)
            .put_events()
            .entries(event("flowpilot"))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(e.code(), Some("AccessDeniedException"), "{role}: {e:?}");
        assert!(e.message().unwrap_or_default().contains(&bus), "{e:?}");
    }
    // front-deny still reads: the Deny names only the writes.
    let deny = assume(&sim.url(), "front-deny").await;
    aws_sdk_dynamodb::Client::new(&deny)
        .get_item()
        .table_name("state")
        .set_key(Some(item()))
        .send()
        .await?;

    // Nothing a denied call sent reached moto.
    let left = aws_sdk_sqs::Client::new(&moto_sdk)
        .receive_message()
        .queue_url(&queue_url)
        .send()
        .await?;
    assert!(left.messages().is_empty(), "{left:?}");

    // An unknown key never reaches moto either.
    let stranger = crate::support::sdk_config_with(
        &sim.url(),
        crate::support::static_credentials("AKIASTRANGER", "x"),
    )
    .await;
    let e = aws_sdk_sqs::Client::new(&stranger)
        .send_message()
        .queue_url(&queue_url)
        .message_body("x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("InvalidClientTokenId"), "{e:?}");
    let e = aws_sdk_dynamodb::Client::new(&stranger)
        .get_item()
        .table_name("state")
        .set_key(Some(item()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("UnrecognizedClientException"), "{e:?}");
    sim.shutdown().await;
    Ok(())
}

/// (c) Trust policies decide who may assume a role; unknown keys, wrong session tokens and a
/// missing identity document are refused the way AWS refuses bad credentials.
#[tokio::test]
async fn trust_policies_and_unknown_credentials() -> anyhow::Result<()> {
    let lambda_only = json!({
        "arn": role_arn("lambda-only"),
        "trust_policy": { "Version": "2012-10-17", "Statement": [{ "Effect": "Allow",
            "Principal": { "Service": "lambda.amazonaws.com" }, "Action": "sts:AssumeRole" }] },
        "policies": []
    });
    let mut config = quiet_config();
    config.iam.identities = Some(identities(vec![
        role(
            "worker",
            json!([{ "Effect": "Allow", "Action": "appflow:ListFlows", "Resource": "*" }]),
        ),
        lambda_only,
    ]));
    let sim = flowpilot_sim::start(config).await?;
    let url = sim.url();

    // The ECS stand-in assumes the task role, as the ECS agent would.
    let ecs = crate::support::sdk_config_with(
        &url,
        crate::support::static_credentials(ECS_KEY, "ecs-secret"),
    )
    .await;
    let sts = aws_sdk_sts::Client::new(&ecs);
    let out = sts
        .assume_role()
        .role_arn(role_arn("worker"))
        .role_session_name("task-1")
        .send()
        .await?;
    let c = out.credentials().context("credentials")?;
    assert!(
        c.access_key_id().starts_with("ASIA") && c.access_key_id().len() == 20,
        "{c:?}"
    );
    assert_eq!(
        out.assumed_role_user().map(|u| u.arn()),
        Some("arn:aws:sts::123456789012:assumed-role/worker/task-1")
    );
    let session = crate::support::sdk_config_with(
        &url,
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "test",
        ),
    )
    .await;
    aws_sdk_appflow::Client::new(&session)
        .list_flows()
        .send()
        .await?;

    // A trust policy that names another service, or no trust at all for the user.
    let err = sts
        .assume_role()
        .role_arn(role_arn("lambda-only"))
        .role_session_name("task-1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    let admin_sts = aws_sdk_sts::Client::new(&admin_sdk(&url).await);
    let err = admin_sts
        .assume_role()
        .role_arn(role_arn("lambda-only"))
        .role_session_name("admin")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains(ADMIN_ARN),
        "{err:?}"
    );
    let err = admin_sts
        .assume_role()
        .role_arn(role_arn("no-such-role"))
        .role_session_name("admin")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    let err = sts
        .assume_role()
        .role_arn(role_arn("worker"))
        .role_session_name("t")
        .duration_seconds(7200)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ValidationError"), "{err:?}");

    // A service principal has no identity-based policies: it may only assume roles.
    let err = service_error(aws_sdk_appflow::Client::new(&ecs).list_flows().send()).await;
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");

    // Unknown keys and a session key with someone else's token.
    let stranger = crate::support::sdk_config_with(
        &url,
        crate::support::static_credentials("AKIASTRANGER", "x"),
    )
    .await;
    let err = service_error(aws_sdk_appflow::Client::new(&stranger).list_flows().send()).await;
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    let err = aws_sdk_sts::Client::new(&stranger)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");
    let forged = crate::support::sdk_config_with(
        &url,
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some("forged".to_owned()),
            None,
            "test",
        ),
    )
    .await;
    let err = service_error(aws_sdk_appflow::Client::new(&forged).list_flows().send()).await;
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    // GetCallerIdentity needs no permission, and the summary shows no secrets.
    let me = aws_sdk_sts::Client::new(&ecs)
        .get_caller_identity()
        .send()
        .await?;
    assert_eq!(me.account(), Some(ACCOUNT));
    let summary = reqwest::get(format!("{url}/_sim/iam"))
        .await?
        .text()
        .await?;
    assert!(
        summary.contains(ECS_KEY) && !summary.contains("ecs-secret"),
        "{summary}"
    );
    sim.shutdown().await;

    // Enforcement on and no identity document: every call is refused with a hint, until one
    // is posted (an invalid one is refused).
    let mut config = quiet_config();
    config.iam.identities = None;
    let sim = flowpilot_sim::start(config).await?;
    let admin = aws_sdk_appflow::Client::new(&admin_sdk(&sim.url()).await);
    let err = service_error(admin.list_flows().send()).await;
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains("/_sim/iam"),
        "{err:?}"
    );
    let http = reqwest::Client::new();
    let bad = http
        .post(format!("{}/_sim/iam", sim.url()))
        .json(&json!({ "account_id": "123456789012", "users": [{ "arn": "nope" }] }))
        .send()
        .await?;
    assert_eq!(bad.status().as_u16(), 400);
    let good = http
        .post(format!("{}/_sim/iam", sim.url()))
        .json(&crate::support::admin_identities(ADMIN_KEY))
        .send()
        .await?;
    assert!(good.status().is_success());
    admin.list_flows().send().await?;
    // /_sim/reset forgets resources, not identities.
    http.post(format!("{}/_sim/reset", sim.url()))
        .send()
        .await?;
    admin.list_flows().send().await?;
    sim.shutdown().await;
    Ok(())
}
