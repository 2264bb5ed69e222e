//! The infrastructure: `infra/flowpilot.yaml` lints clean and deploys into moto with
//! working routing (default-bus rules → work queue, health bus → health tap), and the
//! local stack script starts and stops cleanly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Moto, StackOutputs, deploy_stack, drain_available, drain_queue, sdk_config};
use anyhow::{Context as _, bail, ensure};
use aws_sdk_dynamodb::types::KeySchemaElement;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(20);

struct Deployed {
    // Field order matters: clients first, the server they talk to last.
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    out: StackOutputs,
    // Keeps the server alive for the clients above.
    _moto: Moto,
}

async fn deployed() -> anyhow::Result<Deployed> {
    let moto = Moto::start().await?;
    let out = deploy_stack(&moto).await?;
    let conf = sdk_config(&moto.url).await;
    Ok(Deployed {
        sqs: aws_sdk_sqs::Client::new(&conf),
        events: aws_sdk_eventbridge::Client::new(&conf),
        dynamodb: aws_sdk_dynamodb::Client::new(&conf),
        out,
        _moto: moto,
    })
}

async fn put_event(
    events: &aws_sdk_eventbridge::Client,
    bus: &str,
    source: &str,
    detail_type: &str,
    detail: Value,
) -> anyhow::Result<()> {
    let out = events
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source(source)
                .detail_type(detail_type)
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("PutEvents to {bus}: {}", DisplayErrorContext(e)))?;
    ensure!(
        out.failed_entry_count == 0,
        "PutEvents failed: {:?}",
        out.entries
    );
    Ok(())
}

fn end_report(flow_name: &str) -> Value {
    json!({
        "flow-name": flow_name,
        "flow-arn": format!("arn:aws:appflow:us-east-1:123456789012:flow/{flow_name}"),
        "execution-id": "3a9f1c9e-0000-4000-8000-000000000001",
        "status": "Execution Successful",
        "num-of-records-processed": "10",
        "start-time": "2024-03-01T10:00:00.000Z[UTC]",
        "end-time": "2024-03-01T10:01:00.000Z[UTC]",
    })
}

fn flow_name_of(body: &Value) -> Option<&str> {
    body.pointer("/detail/flow-name").and_then(Value::as_str)
}

/// Every attribute of a queue.
async fn all_attributes(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> anyhow::Result<HashMap<QueueAttributeName, String>> {
    Ok(sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await?
        .attributes
        .unwrap_or_default())
}

/// A DynamoDB key schema as (attribute, key type) pairs.
fn key_pairs(schema: &[KeySchemaElement]) -> Vec<(String, String)> {
    schema
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect()
}

#[test]
fn template_lints_without_errors_or_warnings() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(crate::support::moto::ensure_venv())?;
    let template = crate::support::repo_root()
        .join("infra")
        .join("flowpilot.yaml");
    let out = std::process::Command::new(crate::support::venv_bin("cfn-lint"))
        .arg(&template)
        .stdin(Stdio::null())
        .output()
        .context("running cfn-lint")?;
    ensure!(
        out.status.success() && out.stdout.is_empty(),
        "cfn-lint {} reported problems ({}):\n{}{}",
        template.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn template_deploys_into_moto_with_queues_table_bus_and_rules() -> anyhow::Result<()> {
    let d = deployed().await?;

    let work = all_attributes(&d.sqs, &d.out.queue_url).await?;
    assert_eq!(
        work.get(&QueueAttributeName::QueueArn),
        Some(&d.out.queue_arn)
    );
    assert_eq!(
        work.get(&QueueAttributeName::VisibilityTimeout)
            .map(String::as_str),
        Some("120")
    );
    let redrive: Value = serde_json::from_str(
        work.get(&QueueAttributeName::RedrivePolicy)
            .context("work queue has no redrive policy")?,
    )?;
    let dlq = all_attributes(&d.sqs, &d.out.dlq_url).await?;
    assert_eq!(
        redrive["deadLetterTargetArn"].as_str(),
        dlq.get(&QueueAttributeName::QueueArn).map(String::as_str)
    );
    assert_eq!(redrive["maxReceiveCount"].to_string(), "5");
    assert_eq!(
        dlq.get(&QueueAttributeName::MessageRetentionPeriod)
            .map(String::as_str),
        Some("1209600")
    );

    let table = d
        .dynamodb
        .describe_table()
        .table_name(&d.out.table)
        .send()
        .await?
        .table
        .context("no table description")?;
    let keys = key_pairs(table.key_schema());
    assert_eq!(keys, [("pk".to_owned(), "HASH".to_owned())]);
    let gsi = table
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some("active"))
        .context("table has no GSI `active`")?;
    let gsi_keys = key_pairs(gsi.key_schema());
    assert_eq!(
        gsi_keys,
        [
            ("active_shard".to_owned(), "HASH".to_owned()),
            ("pk".to_owned(), "RANGE".to_owned())
        ]
    );

    let bus = d
        .events
        .describe_event_bus()
        .name(&d.out.health_bus)
        .send()
        .await?;
    assert_eq!(bus.arn(), Some(d.out.health_bus_arn.as_str()));

    let rules = d.events.list_rules().send().await?;
    let names: Vec<&str> = rules.rules().iter().filter_map(|r| r.name()).collect();
    for rule in ["flowpilot-appflow-runs", "flowpilot-commands"] {
        ensure!(
            names.contains(&rule),
            "rule {rule} missing on the default bus: {names:?}"
        );
        let targets = d.events.list_targets_by_rule().rule(rule).send().await?;
        let arns: Vec<&str> = targets.targets().iter().map(|t| t.arn()).collect();
        assert_eq!(arns, [d.out.queue_arn.as_str()], "targets of {rule}");
    }
    let health_rules = d
        .events
        .list_rules()
        .event_bus_name(&d.out.health_bus)
        .send()
        .await?;
    let names: Vec<&str> = health_rules
        .rules()
        .iter()
        .filter_map(|r| r.name())
        .collect();
    ensure!(
        names.contains(&"flowpilot-alerts"),
        "alert rule missing on the health bus: {names:?}"
    );
    assert!(d.out.alert_topic_arn.starts_with("arn:aws:sns:"));
    assert!(d.out.worker_role_arn.ends_with(":role/flowpilot-worker"));
    assert!(
        d.out
            .operator_policy_arn
            .ends_with(":policy/flowpilot-operator")
    );
    // Rule deliveries that fail end up in the delivery DLQ instead of vanishing.
    let delivery_dlq = all_attributes(&d.sqs, &d.out.delivery_dlq_url).await?;
    let delivery_dlq_arn = delivery_dlq
        .get(&QueueAttributeName::QueueArn)
        .context("delivery DLQ has no ARN")?;
    for rule in ["flowpilot-appflow-runs", "flowpilot-commands"] {
        let targets = d.events.list_targets_by_rule().rule(rule).send().await?;
        for t in targets.targets() {
            assert_eq!(
                t.dead_letter_config().and_then(|c| c.arn()),
                Some(delivery_dlq_arn.as_str()),
                "dead-letter queue of {rule}"
            );
            ensure!(t.retry_policy().is_some(), "{rule} has no retry policy");
        }
    }
    Ok(())
}

#[tokio::test]
async fn appflow_run_reports_of_flowpilot_flows_reach_the_work_queue_and_others_do_not()
-> anyhow::Result<()> {
    let d = deployed().await?;
    // Not ours (flow name), not a report we route (detail type), then ours.
    put_event(
        &d.events,
        "default",
        "aws.appflow",
        "AppFlow End Flow Run Report",
        end_report("other-flow"),
    )
    .await?;
    put_event(
        &d.events,
        "default",
        "aws.appflow",
        "AppFlow Start Flow Run Report",
        end_report("fp-x-b0001"),
    )
    .await?;
    put_event(
        &d.events,
        "default",
        "aws.appflow",
        "AppFlow End Flow Run Report",
        end_report("fp-x-b0000"),
    )
    .await?;
    put_event(
        &d.events,
        "default",
        "aws.appflow",
        "AppFlow Scheduled Flow Deactivated",
        json!({"flow-name": "fp-x-live", "deactivation-reason": "connector credentials expired"}),
    )
    .await?;

    let mut bodies = drain_queue(&d.sqs, &d.out.queue_url, |got| got.len() >= 2, WAIT).await?;
    // moto delivers before PutEvents returns: anything else would already be here.
    bodies.extend(drain_available(&d.sqs, &d.out.queue_url).await?);
    let mut flows: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["detail-type"].as_str().unwrap_or_default(),
                flow_name_of(b).unwrap_or_default(),
            )
        })
        .collect();
    flows.sort();
    assert_eq!(
        flows,
        [
            ("AppFlow End Flow Run Report", "fp-x-b0000"),
            ("AppFlow Scheduled Flow Deactivated", "fp-x-live"),
        ],
        "work queue received {bodies:?}"
    );
    let report = bodies
        .iter()
        .find(|b| flow_name_of(b) == Some("fp-x-b0000"))
        .context("end report missing")?;
    assert_eq!(report["source"], "aws.appflow");
    assert_eq!(report["detail"]["num-of-records-processed"], "10");
    Ok(())
}

#[tokio::test]
async fn health_events_reach_the_health_tap_and_not_the_work_queue() -> anyhow::Result<()> {
    let d = deployed().await?;
    put_event(
        &d.events,
        &d.out.health_bus,
        "flowpilot",
        "Workflow Failed",
        json!({"event_id": "e-1", "workflow_id": "wf-1"}),
    )
    .await?;
    let bodies = drain_queue(&d.sqs, &d.out.health_tap_url, |got| !got.is_empty(), WAIT).await?;
    assert_eq!(bodies[0]["source"], "flowpilot");
    assert_eq!(bodies[0]["detail-type"], "Workflow Failed");
    assert_eq!(bodies[0]["detail"]["workflow_id"], "wf-1");
    let work = drain_available(&d.sqs, &d.out.queue_url).await?;
    assert!(
        work.is_empty(),
        "health event leaked to the work queue: {work:?}"
    );
    Ok(())
}

// ------------------------------------------------------------------ infra/local/stack

/// Runs `infra/local/stack` with a private state directory; `down` on drop, so a failing
/// test leaves no process behind.
struct LocalStack {
    state: PathBuf,
    bin: PathBuf,
}

impl LocalStack {
    fn command(&self, sub: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(crate::support::infra_local().join("stack"));
        cmd.arg(sub)
            .env("FLOWPILOT_STATE_DIR", &self.state)
            .env("FLOWPILOT_BIN", &self.bin)
            .stdin(Stdio::null());
        cmd
    }

    async fn run(&self, sub: &str) -> anyhow::Result<String> {
        let mut cmd = Command::from(self.command(sub));
        cmd.kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
            .await
            .with_context(|| format!("stack {sub} timed out"))??;
        if !out.status.success() {
            bail!(
                "stack {sub} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    fn pid(&self, name: &str) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.state.join(format!("{name}.pid")))
            .with_context(|| format!("{name}.pid missing"))?;
        Ok(text.lines().next().unwrap_or_default().parse()?)
    }

    fn env(&self) -> anyhow::Result<HashMap<String, String>> {
        let text = std::fs::read_to_string(self.state.join("env"))?;
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect())
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let _ = self.command("down").output();
    }
}

/// True while `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn stack_script_up_and_down_twice_leaves_no_process_running() -> anyhow::Result<()> {
    let stack = LocalStack {
        state: crate::support::scratch_dir().join(format!("stack-test-{}", std::process::id())),
        bin: PathBuf::from(env!("CARGO_BIN_EXE_flowpilot")),
    };
    let _ = std::fs::remove_dir_all(&stack.state);
    // Safe when nothing runs.
    stack.run("down").await?;

    for round in 1..=2 {
        let printed = stack.run("up").await?;
        assert_eq!(printed.trim(), stack.state.join("env").to_string_lossy());
        let (moto_pid, sim_pid) = (stack.pid("moto")?, stack.pid("sim")?);
        assert!(alive(moto_pid) && alive(sim_pid), "round {round}");

        let env = stack.env()?;
        for key in [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_APPFLOW",
            "AWS_ENDPOINT_URL_CUSTOMER_PROFILES",
            "AWS_REGION",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_PROFILE",
            "FLOWPILOT_MOTO_URL",
            "FLOWPILOT_QUEUE_URL",
            "FLOWPILOT_DLQ_URL",
            "FLOWPILOT_TABLE",
            "FLOWPILOT_HEALTH_BUS",
            "FLOWPILOT_HEALTH_TAP_URL",
            "FLOWPILOT_SIM_URL",
        ] {
            ensure!(
                env.get(key).is_some_and(|v| !v.is_empty()),
                "{key} missing in env file: {env:?}"
            );
        }
        ensure!(env["FLOWPILOT_SIM_URL"].starts_with("http://127.0.0.1:"));
        ensure!(env["FLOWPILOT_MOTO_URL"].starts_with("http://127.0.0.1:"));
        // Every AWS call goes through the simulator, which enforces IAM.
        assert_eq!(env["AWS_ENDPOINT_URL"], env["FLOWPILOT_SIM_URL"]);
        assert_eq!(env["AWS_ENDPOINT_URL_APPFLOW"], env["FLOWPILOT_SIM_URL"]);
        assert_eq!(env["AWS_PROFILE"], crate::support::WORKER_PROFILE);
        ensure!(
            !env.contains_key("AWS_ACCESS_KEY_ID"),
            "static keys would override the profile"
        );

        // The worker profile may receive from the work queue, and nothing more of it.
        let ids = crate::support::Identities {
            iam_file: stack.state.join("iam.json"),
            config_file: PathBuf::from(&env["AWS_CONFIG_FILE"]),
            credentials_file: PathBuf::from(&env["AWS_SHARED_CREDENTIALS_FILE"]),
            operator_role_arn: String::new(),
            admin_key_id: String::new(),
        };
        let worker = crate::support::profile_sdk_config(
            &env["AWS_ENDPOINT_URL"],
            &ids,
            crate::support::WORKER_PROFILE,
        )
        .await;
        let sqs = aws_sdk_sqs::Client::new(&worker);
        sqs.receive_message()
            .queue_url(&env["FLOWPILOT_QUEUE_URL"])
            .wait_time_seconds(0)
            .send()
            .await
            .context("the worker profile receiving from the local stack's work queue")?;
        let denied = sqs
            .get_queue_attributes()
            .queue_url(&env["FLOWPILOT_QUEUE_URL"])
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await;
        let code = denied
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .and_then(|e| {
                use aws_sdk_sqs::error::ProvideErrorMetadata as _;
                e.code().map(str::to_owned)
            });
        ensure!(
            code.as_deref()
                .is_some_and(|c| c.starts_with("AccessDenied")),
            "GetQueueAttributes is not in the worker role, yet answered {denied:?}"
        );
        // The health tap is a test instrument in moto itself.
        let conf = sdk_config(&env["FLOWPILOT_MOTO_URL"]).await;
        aws_sdk_sqs::Client::new(&conf)
            .get_queue_attributes()
            .queue_url(&env["FLOWPILOT_HEALTH_TAP_URL"])
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .context("health tap of the local stack")?;

        // Idempotent: a second `up` keeps the same processes.
        stack.run("up").await?;
        assert_eq!((stack.pid("moto")?, stack.pid("sim")?), (moto_pid, sim_pid));
        assert_eq!(
            stack.run("env").await?,
            std::fs::read_to_string(stack.state.join("env"))?
        );
        stack.run("demo-setup").await?;

        stack.run("down").await?;
        ensure!(
            !alive(moto_pid) && !alive(sim_pid),
            "round {round}: processes survived `down`"
        );
        ensure!(!stack.state.join("moto.pid").exists() && !stack.state.join("sim.pid").exists());
    }
    stack.run("down").await?;
    Ok(())
}
