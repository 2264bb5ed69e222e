//! Fixture tests for `event::parse_message`, plus fuzzing: it must never panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use chrono::{DateTime, Utc};
use flowpilot_core::command::Command;
use flowpilot_core::event::{Message, parse_message};
use flowpilot_core::ids::{FlowRole, WorkflowId};
use flowpilot_core::input::{Input, RunReport};
use proptest::prelude::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/events/",
            $name
        ))
    };
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn acme() -> WorkflowId {
    WorkflowId::new("acme").unwrap()
}

fn run_report(body: &str) -> RunReport {
    match parse_message(body) {
        Ok(Message::Workflow {
            workflow_id,
            input: Input::RunEnded(r),
        }) => {
            assert_eq!(workflow_id, acme());
            r
        }
        other => panic!("expected a run report, got {other:?}"),
    }
}

#[test]
fn successful_end_report() {
    let r = run_report(fixture!("end_success.json"));
    assert_eq!(r.flow_name, "fp-acme-b0003");
    assert_eq!(r.role, FlowRole::Batch(3));
    assert_eq!(
        r.execution_id.as_deref(),
        Some("7c1e6f3a-2b4d-4e8f-9a0b-1c2d3e4f5a6b")
    );
    assert!(r.succeeded);
    assert_eq!(r.error, None);
    assert_eq!(
        (r.records_processed, r.record_failures),
        (Some(63_000), Some(0))
    );
    assert_eq!(r.ended_at, Some(t("2023-08-29T12:55:32.049Z")));
    assert_eq!((r.pull_start, r.pull_end), (None, None));
}

#[test]
fn failed_end_report_carries_the_error() {
    let r = run_report(fixture!("end_failed.json"));
    assert!(!r.succeeded);
    assert_eq!(r.role, FlowRole::Batch(4));
    assert_eq!(
        r.error.as_deref(),
        Some("REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.")
    );
}

#[test]
fn start_report_is_ignored() {
    assert!(matches!(
        parse_message(fixture!("start_report.json")),
        Ok(Message::Ignored { .. })
    ));
}

#[test]
fn scheduled_end_report_has_the_pull_window() {
    let r = run_report(fixture!("end_scheduled.json"));
    assert_eq!(r.role, FlowRole::Live);
    assert_eq!(r.pull_start, Some(t("2026-02-01T09:00:00Z")));
    assert_eq!(r.pull_end, Some(t("2026-02-01T10:00:00Z")));
    assert_eq!(r.records_processed, Some(42));
}

#[test]
fn deactivation_event() {
    match parse_message(fixture!("scheduled_deactivated.json")) {
        Ok(Message::Workflow {
            workflow_id,
            input:
                Input::FlowDeactivated {
                    role,
                    flow_name,
                    reason,
                },
        }) => {
            assert_eq!((workflow_id, role), (acme(), FlowRole::Live));
            assert_eq!(flow_name, "fp-acme-live");
            assert!(reason.contains("3 consecutive failed runs"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn envelope_without_account_with_numbers_and_na() {
    let r = run_report(fixture!("end_no_account_numbers_na.json"));
    assert_eq!(r.records_processed, Some(1500));
    assert_eq!(r.record_failures, None);
    assert_eq!(r.ended_at, Some(t("2024-05-01T00:09:58.5Z")));
}

#[test]
fn a_managed_step_flows_end_report_names_its_workflow_generation_and_step() {
    let body = fixture!("end_managed_step.json");
    assert_eq!(
        parse_message(body),
        Ok(Message::Workflow {
            workflow_id: acme(),
            input: Input::ManagedStepEnded {
                generation: 2,
                step: 5
            },
        })
    );
    // Its start report is not acted on.
    let start = body.replace(
        "AppFlow End Flow Run Report",
        "AppFlow Start Flow Run Report",
    );
    assert!(matches!(parse_message(&start), Ok(Message::Ignored { .. })));
}

#[test]
fn a_managed_live_flows_end_report_is_its_workflows_live_run() {
    let body = fixture!("end_scheduled.json").replace("fp-acme-live", "fp-acme-m2-live");
    let r = run_report(&body);
    assert_eq!(r.role, FlowRole::Live);
    assert_eq!(r.flow_name, "fp-acme-m2-live");
}

#[test]
fn foreign_flows_are_ignored() {
    assert!(matches!(
        parse_message(fixture!("end_foreign_flow.json")),
        Ok(Message::Ignored { .. })
    ));
}

#[test]
fn retry_due_command() {
    let m = parse_message(fixture!("command_retry_due.json")).unwrap();
    assert_eq!(
        m,
        Message::Workflow {
            workflow_id: acme(),
            input: Input::RetryDue {
                batch: 3,
                attempt: 2,
                due_at: t("2026-01-01T00:05:00Z")
            }
        }
    );
}

#[test]
fn reconcile_without_workflow_is_global() {
    assert_eq!(
        parse_message(fixture!("command_reconcile_all.json")),
        Ok(Message::ReconcileAll)
    );
}

#[test]
fn every_command_round_trips_through_its_envelope() {
    let now = t("2026-01-01T00:00:00Z");
    let workflow_id = acme();
    let cases = [
        (
            Command::Start {
                workflow_id: workflow_id.clone(),
            },
            Input::Start,
        ),
        (
            Command::Cancel {
                workflow_id: workflow_id.clone(),
                reason: None,
            },
            Input::Cancel { reason: None },
        ),
        (
            Command::Redrive {
                workflow_id: workflow_id.clone(),
                reason: None,
            },
            Input::Redrive,
        ),
        (
            Command::Rebuild {
                workflow_id: workflow_id.clone(),
                reason: None,
            },
            Input::Rebuild { reason: None },
        ),
        (
            Command::Reconcile {
                workflow_id: workflow_id.clone(),
                reason: None,
            },
            Input::Reconcile,
        ),
        (
            Command::RetryDue {
                workflow_id: workflow_id.clone(),
                batch: 1,
                attempt: 2,
                due_at: now,
            },
            Input::RetryDue {
                batch: 1,
                attempt: 2,
                due_at: now,
            },
        ),
    ];
    for (cmd, want) in cases {
        let env = cmd.envelope(now);
        assert_eq!(env["detail-type"], "Workflow Command");
        assert_eq!(env["source"], "flowpilot.command");
        assert_eq!(env["resources"], serde_json::json!([]));
        let got = parse_message(&env.to_string()).unwrap();
        assert_eq!(
            got,
            Message::Workflow {
                workflow_id: acme(),
                input: want
            }
        );
    }
}

#[test]
fn poison_fixtures_are_poison_with_a_reason() {
    let cases = [
        (fixture!("poison/not_json.txt"), "not JSON"),
        (fixture!("poison/array.json"), "not a JSON object"),
        (fixture!("poison/missing_source.json"), "source"),
        (fixture!("poison/detail_not_object.json"), "detail"),
        (
            fixture!("poison/detail_type_not_string.json"),
            "detail-type",
        ),
        (fixture!("poison/unknown_source.json"), "aws.s3"),
        (fixture!("poison/end_without_status.json"), "status"),
        (fixture!("poison/unknown_command.json"), "explode"),
        (
            fixture!("poison/command_without_workflow.json"),
            "workflow_id",
        ),
        (fixture!("poison/retry_due_incomplete.json"), "due_at"),
        (
            fixture!("poison/command_bad_workflow_id.json"),
            "Not Valid!",
        ),
    ];
    for (body, needle) in cases {
        let e = parse_message(body).expect_err(body);
        assert!(e.reason.contains(needle), "{body}: {}", e.reason);
    }
}

#[test]
fn deeply_nested_json_is_poison_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_message(&deep).is_err());
    let deep_detail = format!(
        r#"{{"detail-type":"AppFlow End Flow Run Report","source":"aws.appflow","detail":{}1{}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(parse_message(&deep_detail).is_err());
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        prop_oneof![
            ".*",
            Just("N/A".to_owned()),
            Just("Execution Successful".to_owned()),
            Just("fp-acme-b0001".to_owned()),
            Just("fp-acme-live".to_owned()),
            Just("2023-08-29T12:55:23.835Z[UTC]".to_owned()),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("detail-type".to_owned()),
                    Just("source".to_owned()),
                    Just("detail".to_owned()),
                    Just("flow-name".to_owned()),
                    Just("status".to_owned()),
                    Just("execution-id".to_owned()),
                    Just("num-of-records-processed".to_owned()),
                    Just("incremental-transfer-time-range".to_owned()),
                    Just("command".to_owned()),
                    Just("workflow_id".to_owned()),
                    "[a-z-]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_envelope() -> impl Strategy<Value = serde_json::Value> {
    (
        prop_oneof![
            Just("AppFlow End Flow Run Report"),
            Just("AppFlow Start Flow Run Report"),
            Just("AppFlow Scheduled Flow Deactivated"),
            Just("Workflow Command"),
            Just("Other")
        ],
        prop_oneof![Just("aws.appflow"), Just("flowpilot.command"), Just("x")],
        arb_json(),
    )
        .prop_map(|(dt, src, detail)| serde_json::json!({"detail-type": dt, "source": src, "detail": detail}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn never_panics_on_arbitrary_text(body in ".*") {
        let _ = parse_message(&body);
    }

    #[test]
    fn never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = parse_message(&v.to_string());
    }

    #[test]
    fn never_panics_on_envelope_shaped_json(v in arb_envelope()) {
        let _ = parse_message(&v.to_string());
    }
}
