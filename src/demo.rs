//! `flowpilot demo`: the whole product on the local stack, start to finish, in one command.
//!
//! It drives flowpilot the way an operator would — the stack script, `flowpilot worker`,
//! `flowpilot workflow create/status` as separate processes — so what it shows is what a user
//! gets, and it tears everything down again (also on failure and Ctrl-C).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

/// Run the demo: local stack, worker, a two-year Salesforce workflow with injected transient
/// failures, live progress, health events and the ledger check.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Start of the demo import (records modified since).
    #[arg(long, default_value = "2024-01-01")]
    pub from: String,
    /// End of the demo import (exclusive).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub to: String,
    /// Batches running at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: u32,
    /// Give up if the workflow is not live after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Where the demo keeps its stack state and logs (default: target/demo under the checkout).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

const DOMAIN: &str = "demo";
const PROFILE: &str = "demo-salesforce";
const OBJECT: &str = "Account";

/// Detail types the example alert rule in `infra/flowpilot.yaml` forwards to its SNS topic.
const ALERTING: [&str; 3] = [
    "Workflow Failed",
    "Integration Degraded",
    "Workflow Stalled",
];

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let repo = repo_root()?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| repo.join("target").join("demo"));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let exe = std::env::current_exe().context("cannot locate the flowpilot executable")?;
    let mut demo = Demo {
        repo,
        state_dir,
        exe,
        env: BTreeMap::new(),
        worker: None,
        stack_up: false,
    };
    let outcome = tokio::select! {
        r = demo.play(&args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let teardown = demo.teardown().await;
    match (outcome, teardown) {
        (Ok(()), Ok(())) => {
            println!(
                "\nDemo complete: the workflow is live, no record missing, nothing left running."
            );
            Ok(ExitCode::SUCCESS)
        }
        (Err(e), _) => {
            eprintln!(
                "\nThe demo failed: {e:#}\nLogs: {} (worker.log, moto.log, sim.log)",
                demo.state_dir.display()
            );
            Ok(ExitCode::FAILURE)
        }
        (Ok(()), Err(e)) => {
            Err(e.context("the demo worked but shutting the local stack down failed"))
        }
    }
}

struct Demo {
    repo: PathBuf,
    state_dir: PathBuf,
    exe: PathBuf,
    /// The env file the stack script wrote: endpoints, credentials, queue, table, bus.
    env: BTreeMap<String, String>,
    worker: Option<Child>,
    stack_up: bool,
}

impl Demo {
    async fn play(&mut self, args: &DemoArgs) -> anyhow::Result<()> {
        step("Starting the local stack (virtualenv, moto, simulator, CloudFormation deploy)");
        self.stack_up = true;
        self.stack(&["up"]).await?;
        self.env = read_env_file(&self.state_dir.join("env"))?;
        let sim = self.var("FLOWPILOT_SIM_URL")?.to_string();
        println!(
            "  simulator {sim}, moto {}",
            self.var("FLOWPILOT_MOTO_URL")?
        );
        self.say_iam_is_enforced(&sim).await?;

        step(
            "Creating the demo domain `demo` and the Salesforce connector profile `demo-salesforce`",
        );
        self.stack(&["demo-setup"]).await?;

        step(
            "Injecting faults: batch 2 (flow -b0002) fails once, batch 7 (-b0007) twice (transient AppFlow errors)",
        );
        let http = reqwest::Client::new();
        let plan = serde_json::json!({
            "run_failures": [
                {"flow_suffix": "-b0002", "attempts": [1], "message": "Rate exceeded"},
                {"flow_suffix": "-b0007", "attempts": [1, 2],
                 "message": "Connection reset by peer while reading from Salesforce"}
            ],
            "run_duration_ms": {"min": 300, "max": 900}
        });
        let resp = http
            .post(format!("{sim}/_sim/faults"))
            .json(&plan)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "the simulator refused the fault plan: {}",
                resp.text().await?
            );
        }

        step("Starting a worker (logs: worker.log)");
        self.start_worker()?;

        step("Creating a two-year Salesforce workflow");
        let kms = self.var("FLOWPILOT_DOMAIN_KMS_KEY_ARN")?.to_string();
        let created = self
            .flowpilot_json(&[
                "workflow",
                "create",
                "--connector",
                "salesforce",
                "--connector-profile",
                PROFILE,
                "--object",
                OBJECT,
                "--domain",
                DOMAIN,
                "--object-type",
                OBJECT,
                "--from",
                &args.from,
                "--to",
                &args.to,
                "--concurrency",
                &args.concurrency.to_string(),
                "--retry-base",
                "1s",
                "--retry-cap",
                "5s",
                "--kms-arn",
                &kms,
                "--json",
            ])
            .await?;
        let id = created["workflow_id"]
            .as_str()
            .context("`workflow create --json` printed no workflow_id")?
            .to_string();
        println!("  workflow {id}");

        step("Progress (until the continuous integration is live)");
        self.watch(&id, Duration::from_secs(args.timeout_secs))
            .await?;

        step("The completed workflow");
        let status = self.flowpilot(&["workflow", "status", &id]).await?;
        print!("{status}");

        step("Health events on the health bus");
        let events = self.health_events().await?;
        for e in &events {
            println!("  {}", health_line(e));
        }
        let completed = events
            .iter()
            .filter(|e| e["detail-type"] == "Workflow Completed")
            .count();
        if completed != 1 {
            bail!("expected one `Workflow Completed` health event, saw {completed}");
        }
        let alerts: Vec<&str> = events
            .iter()
            .filter_map(|e| e["detail-type"].as_str())
            .filter(|t| ALERTING.contains(t))
            .collect();
        println!(
            "  alert rule (Workflow Failed / Integration Degraded / Workflow Stalled): {}",
            if alerts.is_empty() {
                "nothing to page about".to_string()
            } else {
                alerts.join(", ")
            }
        );

        step("Ledger check: every source record in [from, to) ingested exactly once");
        let wf = self
            .flowpilot_json(&["workflow", "status", &id, "--json"])
            .await?;
        let (from, to) = window_of(&wf)?;
        let source = get_json(
            &http,
            &format!("{sim}/_sim/source"),
            &[
                ("connector_profile", PROFILE),
                ("object", OBJECT),
                ("from", &from),
                ("to", &to),
            ],
        )
        .await?;
        // Only the backfill's window: the live integration keeps adding newer records.
        let ledger = get_json(
            &http,
            &format!("{sim}/_sim/ledger"),
            &[
                ("domain", DOMAIN),
                ("object_type", OBJECT),
                ("from", &from),
                ("to", &to),
            ],
        )
        .await?;
        let expected = source["records"].as_u64().context("source count missing")?;
        let distinct = ledger["distinct_records"]
            .as_u64()
            .context("ledger count missing")?;
        let duplicates = ledger["duplicate_writes"].as_u64().unwrap_or(0);
        let missing = expected.saturating_sub(distinct);
        println!("  source records in [{from}, {to}): {expected}");
        println!("  distinct records ingested:        {distinct}");
        println!("  missing:                          {missing}");
        println!("  duplicate writes:                 {duplicates}");
        if missing != 0 || distinct < expected {
            bail!("{missing} source records were not ingested");
        }
        Ok(())
    }

    /// Print a progress line whenever something changes, until live (or failure / timeout).
    async fn watch(&mut self, id: &str, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let wf = self
                .flowpilot_json(&["workflow", "status", id, "--json"])
                .await?;
            let status = wf["status"].as_str().unwrap_or("?").to_string();
            let line = progress_line(&wf);
            if line != last {
                println!("  [{:>5.1}s] {line}", started.elapsed().as_secs_f64());
                last = line;
            }
            match status.as_str() {
                "live" => return Ok(()),
                "failed" | "cancelled" => {
                    bail!(
                        "the workflow ended `{status}`: {}",
                        wf["error"].as_str().unwrap_or("no error recorded")
                    )
                }
                _ => {}
            }
            if started.elapsed() > timeout {
                bail!(
                    "the workflow was not live after {}s (status `{status}`)",
                    timeout.as_secs()
                );
            }
            if let Some(worker) = self.worker.as_mut()
                && let Ok(Some(exit)) = worker.try_wait()
            {
                bail!("the worker exited unexpectedly ({exit}); see worker.log");
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }

    fn start_worker(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.state_dir.join("worker.log"))?;
        let child = Command::new(&self.exe)
            .arg("worker")
            .envs(&self.env)
            .env("FLOWPILOT_METRICS_ADDR", "127.0.0.1:0")
            .env("FLOWPILOT_RETRY_GRACE", "10s")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `flowpilot worker`")?;
        self.worker = Some(child);
        Ok(())
    }

    /// Stop the worker gracefully (SIGTERM, as ECS does), then the stack. Runs on every exit path.
    async fn teardown(&mut self) -> anyhow::Result<()> {
        step("Shutting down (worker, simulator, moto)");
        if let Some(mut worker) = self.worker.take() {
            if let Some(pid) = worker.id() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            match tokio::time::timeout(Duration::from_secs(30), worker.wait()).await {
                Ok(Ok(status)) => println!("  worker exited ({status})"),
                _ => {
                    worker.kill().await.ok();
                    println!("  worker did not stop within 30s and was killed");
                }
            }
        }
        if self.stack_up {
            self.stack(&["down"]).await?;
            self.stack_up = false;
            println!("  local stack stopped");
        }
        Ok(())
    }

    async fn stack(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(self.repo.join("infra/local/stack"))
            .args(args)
            .env("FLOWPILOT_STATE_DIR", &self.state_dir)
            .env("FLOWPILOT_BIN", &self.exe)
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run infra/local/stack")?;
        if !out.status.success() {
            bail!(
                "`infra/local/stack {}` failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Checks with the simulator that it enforces IAM with the deployed identities, and says so.
    async fn say_iam_is_enforced(&self, sim: &str) -> anyhow::Result<()> {
        let iam = get_json(&reqwest::Client::new(), &format!("{sim}/_sim/iam"), &[]).await?;
        if iam["enforce"] != Value::Bool(true) || iam["roles"].as_array().is_none_or(Vec::is_empty)
        {
            bail!("the simulator does not enforce IAM with the deployed roles: {iam}");
        }
        println!(
            "  IAM enforced on every AWS call: the worker runs as the deployed role flowpilot-worker, \
             the CLI as a role holding the stack's OperatorPolicy (profiles in {})",
            self.var("AWS_CONFIG_FILE")?
        );
        Ok(())
    }

    /// Runs the CLI as an operator would: with the operator profile's role.
    async fn flowpilot(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.exe)
            .args(args)
            .envs(&self.env)
            .env("AWS_PROFILE", "flowpilot-operator")
            .stdin(Stdio::null())
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "`flowpilot {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn flowpilot_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self.flowpilot(args).await?;
        serde_json::from_str(&out)
            .with_context(|| format!("`flowpilot {}` printed no JSON", args.join(" ")))
    }

    /// Health events the health-tap queue (a rule on the health bus) received.
    async fn health_events(&self) -> anyhow::Result<Vec<Value>> {
        let url = self.var("FLOWPILOT_HEALTH_TAP_URL")?.to_string();
        // The tap is a local instrument living in moto itself, not part of the deployed
        // system: the demo reads it there directly, as an observer.
        let config = crate::aws::local_sdk_config(
            self.var("FLOWPILOT_MOTO_URL")?,
            self.var("AWS_REGION")?,
            "local-observer",
            "local-observer",
        )
        .await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let mut events = Vec::new();
        // The tap is fed synchronously by PutEvents, so two empty receives mean it is drained.
        let mut empty = 0;
        while empty < 2 {
            let resp = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .context("cannot read the health tap queue")?;
            let messages = resp.messages.unwrap_or_default();
            if messages.is_empty() {
                empty += 1;
            }
            for m in messages {
                if let Some(body) = m.body.as_deref() {
                    events.push(serde_json::from_str(body).unwrap_or(Value::Null));
                }
                if let Some(receipt) = m.receipt_handle {
                    sqs.delete_message()
                        .queue_url(&url)
                        .receipt_handle(receipt)
                        .send()
                        .await?;
                }
            }
        }
        events.sort_by(|a, b| {
            a["detail"]["time"]
                .as_str()
                .cmp(&b["detail"]["time"].as_str())
        });
        Ok(events)
    }

    fn var(&self, name: &str) -> anyhow::Result<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("the stack's env file has no {name}"))
    }
}

/// GET a simulator admin endpoint and parse its JSON answer.
async fn get_json(
    http: &reqwest::Client,
    url: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<Value> {
    Ok(http
        .get(url)
        .query(query)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn step(what: &str) {
    println!("\n==> {what}");
}

/// The checkout the binary was built from: the demo needs its `infra/` folder.
fn repo_root() -> anyhow::Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if root.join("infra/local/stack").is_file() {
        Ok(root)
    } else {
        bail!(
            "the demo needs the flowpilot checkout it was built from ({} has no infra/local/stack): \
             run it from a checkout with `cargo run --release -- demo`",
            root.display()
        )
    }
}

/// Parse the stack's `export NAME=value` env file.
fn read_env_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("the stack wrote no env file at {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
        .collect())
}

fn progress_line(wf: &Value) -> String {
    let batches = wf["batches"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let total = batches.len();
    let count = |s: &str| batches.iter().filter(|b| b["status"] == s).count();
    let done = count("succeeded");
    let attempts: u64 = batches.iter().filter_map(|b| b["attempts"].as_u64()).sum();
    let retries = attempts.saturating_sub(
        batches
            .iter()
            .filter(|b| b["attempts"].as_u64().unwrap_or(0) > 0)
            .count() as u64,
    );
    let records: u64 = batches.iter().filter_map(|b| b["records"].as_u64()).sum();
    let width = 24;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    format!(
        "{:<12} [{}{}] {done}/{total} batches, {} running, {} waiting to retry, {records} records, {retries} retries",
        wf["status"].as_str().unwrap_or("?"),
        "#".repeat(filled),
        ".".repeat(width - filled),
        count("running"),
        count("retry_wait"),
    )
}

/// One health event as the demo narrates it. `batch.index` is printed as it is: batches are
/// numbered from 0 everywhere, as in the flow names.
fn health_line(e: &Value) -> String {
    let d = &e["detail"];
    let batch = d["batch"]["index"]
        .as_u64()
        .map(|i| format!(" batch {i}"))
        .unwrap_or_default();
    let extra = d["error"]
        .as_str()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    format!(
        "{:<22}{batch}{extra}",
        e["detail-type"].as_str().unwrap_or("?")
    )
}

/// The backfill range `[from, to)` from `workflow status --json`.
fn window_of(wf: &Value) -> anyhow::Result<(String, String)> {
    let from = wf["from"].as_str().context("status has no `from`")?;
    let to = wf["to"].as_str().context("status has no `to`")?;
    Ok((from.to_string(), to.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_events_name_batches_from_zero() {
        let e = serde_json::json!({
            "detail-type": "Batch Retry Scheduled",
            "detail": {"flow_name": "fp-wf-1-b0002", "batch": {"index": 2}, "error": "Rate exceeded"},
        });
        assert_eq!(
            health_line(&e),
            "Batch Retry Scheduled  batch 2 (Rate exceeded)"
        );
    }
}
