//! The template is the source of truth for messages and permissions: whatever
//! `infra/flowpilot.yaml` makes produce a message (schedules, the automations the README
//! documents) is delivered through the deployed rules into the work queue and must parse as a
//! known, non-poison message; every command the CLI sends must parse too; and the template's
//! resource and key policies must let each rule deliver to its targets.

use std::path::Path;

use anyhow::{Context as _, ensure};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::Utc;
use flowpilot::core::command::Command;
use flowpilot::core::event::{Message, parse_message};
use flowpilot::core::ids::WorkflowId;
use serde_json::{Value, json};

use crate::support::moto::template_json;
use crate::support::policy::{Caller, Decision, Kind, decide};
use crate::support::template::Template;
use crate::support::{DeployOptions, Moto, deploy_with, drain_available, sdk_config};

/// A message something described by the template (or documented in the README) puts on a bus.
struct Produced {
    producer: String,
    bus: String,
    source: String,
    detail_type: String,
    detail: Value,
}

/// What each EventBridge Scheduler schedule with an event-bus target delivers: per the
/// Scheduler user guide ("templated targets", EventBridge PutEvents), an event whose `source`
/// and `detail-type` are the target's `EventBridgeParameters` and whose `detail` is the
/// target's `Input` (JSON); envelope `account`/`region`/`time`/`resources` are the bus's own.
fn schedule_messages(t: &Template) -> anyhow::Result<Vec<Produced>> {
    let mut out = Vec::new();
    for (name, r) in t.of_type("AWS::Scheduler::Schedule")? {
        let target = &r["Properties"]["Target"];
        let arn = t.string(&target["Arn"])?;
        let Some(bus) = arn.split_once(":event-bus/").map(|(_, b)| b.to_owned()) else {
            continue; // not an EventBridge target
        };
        let params = &target["EventBridgeParameters"];
        let input = target["Input"]
            .as_str()
            .context("schedule Input must be a string")?;
        let detail: Value = serde_json::from_str(input)
            .with_context(|| format!("{name}: Input is not JSON, Scheduler would refuse it"))?;
        out.push(Produced {
            producer: format!("schedule {name}"),
            bus,
            source: t.string(&params["Source"])?,
            detail_type: t.string(&params["DetailType"])?,
            detail,
        });
    }
    Ok(out)
}

/// The command event the README tells alert automations to send.
fn documented_automation_commands() -> Vec<Produced> {
    ["rebuild", "redrive", "reconcile"]
        .into_iter()
        .map(|command| Produced {
            producer: format!("README automation `{command}`"),
            bus: "default".to_owned(),
            source: "flowpilot.command".to_owned(),
            detail_type: "Workflow Command".to_owned(),
            detail: json!({"command": command, "workflow_id": "wf-0123456789"}),
        })
        .collect()
}

/// Deploys the template at `path` into `moto` under `prefix`, puts every produced message on
/// its bus and reads the work queue: one line per problem (nothing routed, poison, ignored).
async fn message_problems(moto: &Moto, path: &Path, prefix: &str) -> anyhow::Result<Vec<String>> {
    let t = Template::new(template_json(Some(path)).await?);
    let mut opts = DeployOptions::standard(moto);
    opts.template = Some(path.to_owned());
    opts.name_prefix = prefix.to_owned();
    opts.stack_name = prefix.to_owned();
    opts.state_dir =
        crate::support::scratch_dir().join(format!("contracts-{prefix}-{}", moto.port));
    let stack = deploy_with(moto, &opts).await?;
    // The producers are AWS services and automations, not flowpilot: they talk to moto.
    let conf = sdk_config(&moto.url).await;
    let events = aws_sdk_eventbridge::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let mut produced = schedule_messages(&t)?;
    ensure!(
        !produced.is_empty(),
        "the template has no schedule with an event-bus target"
    );
    produced.extend(documented_automation_commands());
    let mut problems = Vec::new();
    for p in produced {
        let out = events
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&p.bus)
                    .source(&p.source)
                    .detail_type(&p.detail_type)
                    .detail(p.detail.to_string())
                    .build(),
            )
            .send()
            .await?;
        ensure!(
            out.failed_entry_count == 0,
            "PutEvents refused {}",
            p.producer
        );
        // moto delivers before PutEvents returns.
        let bodies = drain_available(&sqs, &stack.queue_url).await?;
        if bodies.is_empty() {
            problems.push(format!(
                "{}: no rule delivers it to the work queue",
                p.producer
            ));
        }
        for body in bodies {
            match parse_message(&body.to_string()) {
                Err(poison) => problems.push(format!("{}: {poison}", p.producer)),
                Ok(Message::Ignored { reason }) => {
                    problems.push(format!("{}: ignored by the worker: {reason}", p.producer))
                }
                Ok(_) => {}
            }
        }
    }
    Ok(problems)
}

fn template_path() -> std::path::PathBuf {
    crate::support::repo_root().join("infra/flowpilot.yaml")
}

#[tokio::test]
async fn messages_the_template_produces_reach_the_worker_as_known_commands() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let problems = message_problems(&moto, &template_path(), "flowpilot").await?;
    ensure!(problems.is_empty(), "{problems:#?}");
    Ok(())
}

#[tokio::test]
async fn a_schedule_sending_detail_type_reconcile_is_caught_as_poison() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let mut json = template_json(None).await?;
    json["Resources"]["ReconcileSchedule"]["Properties"]["Target"]["EventBridgeParameters"]["DetailType"] =
        json!("Reconcile");
    let scratch =
        crate::support::scratch_dir().join(format!("template-reconcile-{}.json", moto.port));
    std::fs::write(&scratch, serde_json::to_vec_pretty(&json)?)?;
    let problems = message_problems(&moto, &scratch, "scratch").await?;
    ensure!(
        problems
            .iter()
            .any(|p| p.contains("ReconcileSchedule") && p.contains("poison")),
        "the scratch copy's schedule should have been reported as poison: {problems:#?}"
    );
    Ok(())
}

#[test]
fn every_command_the_cli_and_the_worker_send_parses() -> anyhow::Result<()> {
    let wf = WorkflowId::new("wf-0123456789")?;
    let now = Utc::now();
    let reason = Some("from the CLI".to_owned());
    let workflow_id = wf.clone();
    let commands = [
        Command::Start {
            workflow_id: workflow_id.clone(),
        },
        Command::Cancel {
            workflow_id: workflow_id.clone(),
            reason: reason.clone(),
        },
        Command::Redrive {
            workflow_id: workflow_id.clone(),
            reason: reason.clone(),
        },
        Command::Rebuild {
            workflow_id: workflow_id.clone(),
            reason: reason.clone(),
        },
        Command::Reconcile {
            workflow_id: workflow_id.clone(),
            reason,
        },
        Command::RetryDue {
            workflow_id,
            batch: 3,
            attempt: 2,
            due_at: now,
        },
        Command::ReconcileAll,
    ];
    for cmd in commands {
        let body = cmd.envelope(now).to_string();
        match parse_message(&body) {
            Ok(m @ (Message::Workflow { .. } | Message::ReconcileAll))
                if m == cmd.clone().into_message() => {}
            other => anyhow::bail!("`{}` does not parse as itself: {other:?}", cmd.name()),
        }
    }
    Ok(())
}

/// Every rule (logical id) with its targets, from the template.
fn rules(t: &Template) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    Ok(t.of_type("AWS::Events::Rule")?
        .into_iter()
        .map(|(name, r)| {
            let targets = r["Properties"]["Targets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (name.to_owned(), targets)
        })
        .collect())
}

#[tokio::test]
async fn every_rule_target_dead_letters_retries_and_has_a_failure_alarm() -> anyhow::Result<()> {
    let t = Template::new(template_json(None).await?);
    let rules = rules(&t)?;
    ensure!(
        rules.len() >= 3,
        "expected the AppFlow, command and alert rules"
    );
    let alarms = t.of_type("AWS::CloudWatch::Alarm")?;
    for (rule, targets) in &rules {
        ensure!(!targets.is_empty(), "{rule} has no target");
        for target in targets {
            ensure!(
                target.get("DeadLetterConfig").is_some(),
                "{rule}: a target without DeadLetterConfig loses events silently"
            );
            ensure!(
                target.get("RetryPolicy").is_some(),
                "{rule}: a target without RetryPolicy"
            );
        }
        let watched = alarms.iter().any(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"] == "AWS/Events"
                && p["MetricName"] == "FailedInvocations"
                && p["Dimensions"].as_array().is_some_and(|d| {
                    d.iter()
                        .any(|d| d["Name"] == "RuleName" && d["Value"] == json!({"Ref": rule}))
                })
        });
        ensure!(watched, "no FailedInvocations alarm watches {rule}");
    }
    Ok(())
}

/// The resource policy attached to the queue or topic `arn`, resolved.
fn policy_of(t: &Template, arn: &str) -> anyhow::Result<Value> {
    for kind in ["AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"] {
        for (_, p) in t.of_type(kind)? {
            let props = &p["Properties"];
            let attached = props
                .get("Queues")
                .or(props.get("Topics"))
                .context("no targets")?;
            for r in attached.as_array().context("Queues/Topics is a list")? {
                let name = t.string(r)?;
                // Queue policies name queues by URL, topic policies by ARN.
                let matches = name == arn || name.rsplit('/').next() == arn.rsplit(':').next();
                if matches {
                    return t.resolve(&props["PolicyDocument"]);
                }
            }
        }
    }
    anyhow::bail!("no resource policy is attached to {arn}")
}

#[tokio::test]
async fn resource_policies_let_every_rule_deliver_to_its_targets_and_dead_letter_queue()
-> anyhow::Result<()> {
    let t = Template::new(template_json(None).await?);
    for (rule, targets) in rules(&t)? {
        let rule_arn = t.string(&json!({"Fn::GetAtt": [rule, "Arn"]}))?;
        for target in targets {
            let mut destinations = vec![t.string(&target["Arn"])?];
            destinations.push(t.string(&target["DeadLetterConfig"]["Arn"])?);
            for dest in destinations {
                let action = if dest.starts_with("arn:aws:sns:") {
                    "sns:Publish"
                } else {
                    "sqs:SendMessage"
                };
                let policy = policy_of(&t, &dest)?;
                let d = decide(
                    &policy,
                    Kind::Resource,
                    Caller::Service("events.amazonaws.com"),
                    action,
                    &dest,
                    &[
                        ("aws:SourceArn", &rule_arn),
                        ("aws:SourceAccount", &t.account),
                    ],
                )?;
                ensure!(
                    d == Decision::Allow,
                    "{rule} cannot {action} to {dest}: {d:?}"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn alert_topic_key_lets_eventbridge_and_cloudwatch_publish() -> anyhow::Result<()> {
    let t = Template::new(template_json(None).await?);
    let topic = &t.resource("AlertTopic")?["Properties"];
    let key = &topic["KmsMasterKeyId"];
    if let Some(alias) = key.as_str() {
        ensure!(
            !alias.starts_with("alias/aws/"),
            "AlertTopic uses the AWS managed key {alias}: EventBridge and CloudWatch alarms cannot use it"
        );
    }
    if key.is_null() {
        return Ok(()); // unencrypted: nothing can stand in the way (the template says why)
    }
    let key_name = key["Ref"]
        .as_str()
        .context("KmsMasterKeyId should Ref a key of the template")?;
    let key_arn = t.string(&json!({"Fn::GetAtt": [key_name, "Arn"]}))?;
    let policy = t.resolve(&t.resource(key_name)?["Properties"]["KeyPolicy"])?;
    for service in ["events.amazonaws.com", "cloudwatch.amazonaws.com"] {
        for action in ["kms:GenerateDataKey", "kms:Decrypt"] {
            let d = decide(
                &policy,
                Kind::Resource,
                Caller::Service(service),
                action,
                &key_arn,
                &[("aws:SourceAccount", &t.account)],
            )?;
            ensure!(
                d == Decision::Allow,
                "{service} may not {action} with the alert key: {d:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn schedulers_may_put_their_events_on_their_target_bus() -> anyhow::Result<()> {
    let t = Template::new(template_json(None).await?);
    for (name, r) in t.of_type("AWS::Scheduler::Schedule")? {
        let target = &r["Properties"]["Target"];
        let bus = t.string(&target["Arn"])?;
        let role = t.string(&target["RoleArn"])?;
        let role_name = role.rsplit('/').next().context("role ARN")?;
        let (_, role_res) = t
            .of_type("AWS::IAM::Role")?
            .into_iter()
            .find(|(_, r)| {
                t.string(&r["Properties"]["RoleName"]).ok().as_deref() == Some(role_name)
            })
            .with_context(|| format!("{name}: role {role} is not in the template"))?;
        let trust = t.resolve(&role_res["Properties"]["AssumeRolePolicyDocument"])?;
        let d = decide(
            &trust,
            Kind::Trust,
            Caller::Service("scheduler.amazonaws.com"),
            "sts:AssumeRole",
            &role,
            &[("aws:SourceAccount", &t.account)],
        )?;
        ensure!(
            d == Decision::Allow,
            "{name}: Scheduler cannot assume {role}"
        );
        let allowed = role_res["Properties"]["Policies"]
            .as_array()
            .context("inline policies")?
            .iter()
            .map(|p| {
                let doc = t.resolve(&p["PolicyDocument"])?;
                decide(
                    &doc,
                    Kind::Identity,
                    Caller::Aws(&role),
                    "events:PutEvents",
                    &bus,
                    &[],
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        ensure!(
            allowed.contains(&Decision::Allow) && !allowed.contains(&Decision::ExplicitDeny),
            "{name}: its role may not PutEvents on {bus}"
        );
    }
    Ok(())
}
