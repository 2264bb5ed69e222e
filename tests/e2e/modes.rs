//! One template, two worker modes (issue 15): each mode deploys into moto, and whatever moto
//! could not create is listed with its reason (never silently dropped); the ECS autoscaling,
//! drain and Lambda resources keep the contracts the code relies on.

use anyhow::{Context as _, ensure};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use crate::support::moto::template_json;
use crate::support::{DeployOptions, Moto, deploy_with, sdk_config};

/// Types moto's CloudFormation does not model (moto 5.2.5), and the one resource deploy.py
/// removes after deploying (the event source mapping, which moto would run in Docker).
const NOT_IN_MOTO: &[&str] = &[
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::Scheduler::Schedule",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::Lambda::EventSourceMapping",
];

#[tokio::test]
async fn the_template_deploys_in_both_modes_and_lists_what_moto_could_not_create()
-> anyhow::Result<()> {
    for (mode, present, absent, visibility, expected_missing) in [
        (
            "ecs",
            &[
                "Cluster",
                "WorkerTaskDefinition",
                "WorkerService",
                "WorkerExecutionRole",
            ][..],
            &["WorkerFunction", "WorkerFunctionPolicy"][..],
            "120",
            &["WorkerScalableTarget", "WorkerScalingPolicy"][..],
        ),
        (
            "lambda",
            &["WorkerFunction", "WorkerFunctionPolicy"][..],
            &[
                "Cluster",
                "WorkerTaskDefinition",
                "WorkerService",
                "WorkerExecutionRole",
            ][..],
            "360",
            &["WorkerEventSourceMapping"][..],
        ),
    ] {
        let moto = Moto::start().await?;
        let mut opts = DeployOptions::standard(&moto);
        opts.worker_mode = mode;
        let stack = deploy_with(&moto, &opts).await?;
        ensure!(stack.worker_mode == mode);
        println!("WorkerMode {mode}: not created in moto:");
        for (id, kind, reason) in &stack.not_created {
            println!("  {id} ({kind}): {reason}");
            ensure!(
                NOT_IN_MOTO.contains(&kind.as_str()),
                "{mode}: moto did not create {id} ({kind}), a type it used to create: {reason}"
            );
        }
        for id in expected_missing {
            ensure!(
                stack.not_created.iter().any(|(i, ..)| i == id),
                "{mode}: {id} is neither created nor listed as not created: {:?}",
                stack.not_created
            );
        }
        let conf = sdk_config(&moto.url).await;
        let ids: Vec<&str> = stack.created.iter().map(String::as_str).collect();
        for id in present {
            ensure!(ids.contains(id), "{mode}: {id} missing from {ids:?}");
        }
        for id in absent {
            ensure!(
                !ids.contains(id),
                "{mode}: {id} created, but it belongs to the other mode"
            );
        }
        let attrs = aws_sdk_sqs::Client::new(&conf)
            .get_queue_attributes()
            .queue_url(&stack.queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await?;
        ensure!(
            attrs
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
                .map(String::as_str)
                == Some(visibility),
            "{mode}: work queue visibility {attrs:?}"
        );
    }
    Ok(())
}

fn resource<'a>(t: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    t["Resources"]
        .get(name)
        .with_context(|| format!("the template has no {name}"))
}

#[tokio::test]
async fn a_stopped_task_drains_within_its_stop_timeout() -> anyhow::Result<()> {
    let t = template_json(None).await?;
    let container = &resource(&t, "WorkerTaskDefinition")?["Properties"]["ContainerDefinitions"][0];
    let stop_timeout = container["StopTimeout"]
        .as_u64()
        .context("the worker container sets no StopTimeout (Fargate's default is 30 s)")?;
    let grace = container["Environment"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["Name"] == "FLOWPILOT_SHUTDOWN_GRACE"))
        .and_then(|e| e["Value"].as_str())
        .context("the task definition does not set FLOWPILOT_SHUTDOWN_GRACE")?;
    let grace = flowpilot::config::parse_duration(grace).context("unparsable grace")?;
    // Releasing unfinished messages and writing deferred outcomes after the grace: a few
    // requests; 20 s leaves room for slow ones (each SDK call retries).
    ensure!(
        stop_timeout >= grace.as_secs() + 20,
        "StopTimeout {stop_timeout} s does not cover FLOWPILOT_SHUTDOWN_GRACE {grace:?} plus the release"
    );
    // Fargate's maximum.
    ensure!(stop_timeout <= 120);
    // README: the grace is at least the long-poll wait.
    ensure!(grace.as_secs() >= 20);
    Ok(())
}

#[tokio::test]
async fn the_service_scales_on_visible_messages_per_running_task() -> anyhow::Result<()> {
    let t = template_json(None).await?;
    let service = &resource(&t, "WorkerService")?["Properties"];
    ensure!(
        service.get("DesiredCount").is_none(),
        "a DesiredCount would reset the autoscaled count on every stack update"
    );
    let target = &resource(&t, "WorkerScalableTarget")?["Properties"];
    ensure!(target["ScalableDimension"] == "ecs:service:DesiredCount");
    ensure!(target["MinCapacity"] == json!({"Ref": "MinTasks"}));
    ensure!(target["MaxCapacity"] == json!({"Ref": "MaxTasks"}));
    ensure!(
        t["Parameters"]["MinTasks"]["MinValue"].as_u64() >= Some(1),
        "a floor of 0 tasks leaves the per-task metric without a value: nothing would scale out"
    );
    let policy = &resource(&t, "WorkerScalingPolicy")?["Properties"];
    ensure!(policy["PolicyType"] == "TargetTrackingScaling");
    ensure!(policy["ScalingTargetId"] == json!({"Ref": "WorkerScalableTarget"}));
    let config = &policy["TargetTrackingScalingPolicyConfiguration"];
    ensure!(config["TargetValue"] == json!({"Ref": "BacklogPerTask"}));
    let metrics = config["CustomizedMetricSpecification"]["Metrics"]
        .as_array()
        .context("metric math")?;
    let by_id = |id: &str| metrics.iter().find(|m| m["Id"] == id);
    let visible = by_id("visible").context("no `visible` metric")?;
    ensure!(visible["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible");
    ensure!(
        visible["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
            == json!({"Fn::GetAtt": ["WorkQueue", "QueueName"]}),
        "the backlog is not the work queue's"
    );
    let tasks = by_id("tasks").context("no `tasks` metric")?;
    ensure!(tasks["MetricStat"]["Metric"]["Namespace"] == "ECS/ContainerInsights");
    ensure!(tasks["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount");
    let returned: Vec<&Value> = metrics.iter().filter(|m| m["ReturnData"] == true).collect();
    ensure!(
        returned.len() == 1 && returned[0]["Expression"] == "visible / tasks",
        "target tracking needs exactly one returned series, the backlog per task: {returned:?}"
    );
    // RunningTaskCount exists only with Container Insights.
    let settings = &resource(&t, "Cluster")?["Properties"]["ClusterSettings"];
    ensure!(
        settings.as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["Name"] == "containerInsights" && s["Value"] == "enabled")),
        "Container Insights is off: RunningTaskCount would have no data"
    );
    Ok(())
}

#[tokio::test]
async fn the_function_consumes_the_work_queue_with_partial_batch_responses() -> anyhow::Result<()> {
    let t = template_json(None).await?;
    let function = &resource(&t, "WorkerFunction")?;
    ensure!(function["Condition"] == "LambdaMode");
    let f = &function["Properties"];
    ensure!(f["Runtime"] == "provided.al2023");
    ensure!(
        f["Role"] == json!({"Fn::GetAtt": ["WorkerTaskRole", "Arn"]}),
        "the function must hold the worker role, whose statements tests/e2e/iam.rs proves"
    );
    for var in [
        "FLOWPILOT_QUEUE_URL",
        "FLOWPILOT_TABLE",
        "FLOWPILOT_HEALTH_BUS",
    ] {
        ensure!(
            f["Environment"]["Variables"].get(var).is_some(),
            "{var} not set"
        );
    }
    let timeout = f["Timeout"].as_u64().context("Timeout")?;
    let visibility = &resource(&t, "WorkQueue")?["Properties"]["VisibilityTimeout"];
    let lambda_visibility = visibility["Fn::If"][1]
        .as_u64()
        .context("the work queue's visibility in lambda mode")?;
    ensure!(visibility["Fn::If"][0] == "LambdaMode");
    ensure!(
        lambda_visibility >= 6 * timeout,
        "visibility {lambda_visibility} s < 6 × the function timeout {timeout} s"
    );
    // The function answers before its deadline (src/lambda/batch.rs margins).
    ensure!(timeout > flowpilot::lambda::batch::SOFT_MARGIN.as_secs() * 2);

    let mapping = &resource(&t, "WorkerEventSourceMapping")?;
    let m = &mapping["Properties"];
    ensure!(m["EventSourceArn"] == json!({"Fn::GetAtt": ["WorkQueue", "Arn"]}));
    ensure!(m["FunctionName"] == json!({"Ref": "WorkerFunction"}));
    ensure!(
        m["FunctionResponseTypes"] == json!(["ReportBatchItemFailures"]),
        "without ReportBatchItemFailures one poison record redelivers its whole batch"
    );
    ensure!(m["BatchSize"].as_u64() <= Some(10));
    ensure!(
        m["ScalingConfig"]["MaximumConcurrency"] == f["ReservedConcurrentExecutions"],
        "the mapping's concurrency must equal the reserved concurrency (no throttled invocations)"
    );
    ensure!(
        mapping["DependsOn"] == "WorkerFunctionPolicy",
        "creating the mapping checks the role may poll the queue"
    );
    let policy = &resource(&t, "WorkerFunctionPolicy")?["Properties"];
    ensure!(policy["Roles"] == json!([{"Ref": "WorkerTaskRole"}]));
    let statements = policy["PolicyDocument"]["Statement"]
        .as_array()
        .context("statements")?;
    let sids: Vec<&str> = statements
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    ensure!(
        sids == ["EventSourceMapping", "FunctionLogs"],
        "the function's own statements are the mapping's and the logs': {sids:?}"
    );
    let esm = &statements[0];
    ensure!(
        esm["Action"]
            == json!([
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes"
            ])
    );
    ensure!(esm["Resource"] == json!({"Fn::GetAtt": ["WorkQueue", "Arn"]}));
    Ok(())
}
