//! `flowpilot workflow plan`, run as the built binary (issue 2 acceptance).

use std::process::{Command, Output};

use serde_json::Value;

/// The acceptance spec; `extra` flags replace a base flag of the same name or are appended.
const BASE: &[(&str, &str)] = &[
    ("--connector", "salesforce"),
    ("--connector-profile", "sf"),
    ("--object", "Account"),
    ("--domain", "acme"),
    ("--object-type", "Account"),
    ("--to", "2026-01-01T00:00:00Z"),
];

fn flowpilot(extra: &[&str]) -> Output {
    let mut args = vec!["workflow", "plan"];
    for (flag, value) in BASE {
        if !extra.contains(flag) {
            args.extend([*flag, *value]);
        }
    }
    Command::new(env!("CARGO_BIN_EXE_flowpilot"))
        .args(args)
        .args(extra)
        .output()
        .expect("run flowpilot")
}

fn json_plan(extra: &[&str]) -> Value {
    let out = flowpilot(extra);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn two_years_plan_twelve_two_month_batches() {
    let plan = json_plan(&["--from", "2024-01-01", "--json"]);
    assert_eq!(plan["bulk"], true);
    let batches = plan["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 12);
    assert_eq!(
        batches[0],
        serde_json::json!({"index": 0, "start": "2024-01-01T00:00:00Z", "end": "2024-03-01T00:00:00Z"})
    );
    assert_eq!(
        batches[11],
        serde_json::json!({"index": 11, "start": "2025-11-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(
        plan["continuous_first_execution_from"],
        "2026-01-01T00:00:00Z"
    );
    assert!(plan["notes"].is_array());
    let keys: Vec<_> = plan.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
}

#[test]
fn short_range_has_no_bulk_phase() {
    let plan = json_plan(&["--from", "2025-12-01", "--json"]);
    assert_eq!(plan["bulk"], false);
    assert_eq!(plan["batches"], serde_json::json!([]));
    assert_eq!(
        plan["continuous_first_execution_from"],
        "2025-12-01T00:00:00Z"
    );
}

#[test]
fn bad_domain_exits_2_naming_the_field_and_pattern() {
    let out = flowpilot(&["--from", "2024-01-01", "--domain", "bad name!", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("domain") && stderr.contains("^[a-zA-Z0-9_-]{1,64}$"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn table_output_lists_batches_and_notes() {
    let out = flowpilot(&["--from", "2024-01-01"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2025-11-01T00:00:00Z"), "{stdout}");
    assert!(stdout.contains("note:"), "{stdout}");
}

/// Issue 10: the record-failure budget is a spec field, shown by the plan and bounded.
#[test]
fn max_record_failures_is_planned_and_bounded() {
    let out = flowpilot(&["--from", "2024-01-01", "--max-record-failures", "25"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("may fail to write 25 record(s) and still succeed"),
        "{stdout}"
    );
    let out = flowpilot(&["--from", "2024-01-01", "--max-record-failures", "1000001"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("max-record-failures") && stderr.contains("0 to 1000000"),
        "{stderr}"
    );
}

#[test]
fn spec_file_values_are_overridden_by_flags() {
    let dir = std::env::temp_dir().join(format!("flowpilot-cli-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("spec.toml");
    std::fs::write(
        &file,
        "from = 2024-01-01\nbatch_size = \"P1Y\"\nconcurrency = 2\n",
    )
    .unwrap();
    let plan = json_plan(&["--spec", file.to_str().unwrap(), "--json"]);
    assert_eq!(plan["batches"].as_array().unwrap().len(), 2);
    let plan = json_plan(&[
        "--spec",
        file.to_str().unwrap(),
        "--batch-size",
        "P6M",
        "--json",
    ]);
    assert_eq!(plan["batches"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn zendesk_plans_one_run_and_says_why() {
    let plan = json_plan(&["--from", "2024-01-01", "--connector", "zendesk", "--json"]);
    assert_eq!(plan["batches"].as_array().unwrap().len(), 1);
    assert!(plan["notes"][0].as_str().unwrap().contains("GREATER_THAN"));
}

#[test]
fn several_bad_values_are_all_reported() {
    let out = flowpilot(&[
        "--from",
        "someday",
        "--concurrency",
        "0",
        "--batch-size",
        "P",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in ["from", "concurrency", "batch-size"] {
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
}
