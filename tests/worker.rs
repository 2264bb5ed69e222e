//! End-to-end tests of `flowpilot worker` and the operator CLI (issue 4 acceptance).
//!
//! Each test gets its own moto server with the flowpilot stack deployed, its own in-process
//! AppFlow + Customer Profiles simulator, and real `flowpilot` processes (worker, CLI) talking
//! to both through the real AWS SDK clients. Waits are polls with deadlines.

#[allow(unused_imports)] // each test binary uses part of the harness
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use flowpilot::core::ids::WorkflowId;
use flowpilot::core::model::{Workflow, WorkflowStatus};
use flowpilot::store::Store as _;
use flowpilot::store::dynamo::DynamoStore;
use flowpilot_sim::{DurationRange, EventsConfig, FaultPlan, RunFailure, SimConfig, SimHandle};
use serde_json::Value;
use support::{Moto, StackOutputs};
use tokio::process::{Child, Command};

const KMS_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
const DOMAIN: &str = "demo";
const OBJECT_TYPE: &str = "Account";
const PROFILE: &str = "sf-test";
const FROM: &str = "2024-01-01T00:00:00Z";
const TO: &str = "2026-01-01T00:00:00Z";
/// Whole-workflow deadline (12 short runs, retries with a 200 ms base, moto's slow SQS).
const WORKFLOW_DEADLINE: Duration = Duration::from_secs(150);

/// One isolated local stack: moto + deployed template + simulator.
struct Env {
    moto: Moto,
    stack: StackOutputs,
    sim: Option<SimHandle>,
    sim_url: String,
    sdk: SdkConfig,
    store: DynamoStore,
    http: reqwest::Client,
    name: String,
}

/// A `flowpilot worker` process, killed on drop; stderr goes to a log file.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics endpoint the worker logged (it binds 127.0.0.1:0).
    async fn metrics_url(&self) -> anyhow::Result<String> {
        const MARKER: &str = "serving /healthz and /metrics on ";
        support::poll_until(Duration::from_secs(30), || async {
            Ok(self.log_text().lines().find_map(|l| {
                l.split_once(MARKER)
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_owned())
            }))
        })
        .await
        .with_context(|| {
            format!(
                "worker never logged its metrics address:\n{}",
                self.log_text()
            )
        })
    }

    async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let url = self.metrics_url().await?;
        Ok(http
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow!("worker already exited"))
    }
}

impl Env {
    async fn start(name: &str, faults: FaultPlan) -> anyhow::Result<Env> {
        let moto = Moto::start().await?;
        let stack = support::deploy_stack(&moto).await?;
        let sim = flowpilot_sim::start(SimConfig {
            // Scheduled (live) flows tick once an hour: the ledger then holds exactly what the
            // backfill wrote while the test looks at it.
            tick_ms: 3_600_000,
            events: EventsConfig {
                disabled: false,
                endpoint_url: Some(moto.url.clone()),
                access_key_id: Some(support::ACCESS_KEY_ID.to_owned()),
                secret_access_key: Some(support::SECRET_ACCESS_KEY.to_owned()),
            },
            faults,
            ..SimConfig::default()
        })
        .await?;
        let sim_url = sim.url();
        let sdk = support::sdk_config(&moto.url).await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &stack.table);
        let env = Env {
            moto,
            stack,
            sim: Some(sim),
            sim_url,
            sdk,
            store,
            http: reqwest::Client::new(),
            name: name.to_owned(),
        };
        env.create_domain().await?;
        Ok(env)
    }

    /// The operator's connector profile, Customer Profiles domain and object type, in the
    /// simulator.
    async fn create_domain(&self) -> anyhow::Result<()> {
        use aws_sdk_appflow::types::{
            ConnectionMode, ConnectorProfileConfig, ConnectorProfileProperties, ConnectorType,
            SalesforceConnectorProfileProperties,
        };
        let appflow = aws_sdk_appflow::Client::new(&support::sdk_config(&self.sim_url).await);
        appflow
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
            .context("CreateConnectorProfile in the simulator")?;
        let cp = aws_sdk_customerprofiles::Client::new(&support::sdk_config(&self.sim_url).await);
        cp.create_domain()
            .domain_name(DOMAIN)
            .default_expiration_days(366)
            .default_encryption_key(KMS_ARN)
            .send()
            .await
            .context("CreateDomain in the simulator")?;
        cp.put_profile_object_type()
            .domain_name(DOMAIN)
            .object_type_name(OBJECT_TYPE)
            .description("Salesforce accounts")
            .send()
            .await
            .context("PutProfileObjectType in the simulator")?;
        Ok(())
    }

    fn process_env(&self) -> Vec<(String, String)> {
        let mut env = support::aws_env(&self.moto.url, &self.sim_url);
        env.extend(self.stack.flowpilot_env());
        env
    }

    fn spawn_worker(&self, label: &str, extra: &[(&str, &str)]) -> anyhow::Result<Worker> {
        let log = support::scratch_dir().join(format!(
            "worker-{}-{label}-{}.log",
            self.name, self.moto.port
        ));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowpilot"));
        cmd.arg("worker")
            .envs(self.process_env())
            .env("FLOWPILOT_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info,aws_config=warn,aws_smithy_runtime=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("spawning flowpilot worker")?;
        Ok(Worker { child, log })
    }

    /// Runs the CLI to completion; fails unless it exits 0.
    async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_flowpilot"))
            .args(args)
            .envs(self.process_env())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "flowpilot {} failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    }

    /// `workflow create` for the 2-year Salesforce range; returns the workflow id.
    async fn create_workflow(&self, extra: &[&str]) -> anyhow::Result<WorkflowId> {
        self.create_workflow_from(FROM, extra).await
    }

    async fn create_workflow_from(&self, from: &str, extra: &[&str]) -> anyhow::Result<WorkflowId> {
        let mut args = vec![
            "workflow",
            "create",
            "--connector",
            "salesforce",
            "--connector-profile",
            PROFILE,
            "--object",
            "Account",
            "--domain",
            DOMAIN,
            "--object-type",
            OBJECT_TYPE,
            "--from",
            from,
            "--to",
            TO,
            "--retry-base",
            "200ms",
            "--retry-cap",
            "1s",
            "--kms-arn",
            KMS_ARN,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.cli(&args).await?;
        let v: Value =
            serde_json::from_str(out.trim()).with_context(|| format!("create printed {out}"))?;
        let id = v["workflow_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no workflow_id in {v}"))?;
        Ok(WorkflowId::new(id)?)
    }

    async fn load(&self, id: &WorkflowId) -> anyhow::Result<Workflow> {
        self.store
            .load(id)
            .await?
            .ok_or_else(|| anyhow!("workflow {id} not in the table"))
    }

    /// Polls the state table until `pred` holds.
    async fn wait_for(
        &self,
        id: &WorkflowId,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Workflow) -> bool,
    ) -> anyhow::Result<Workflow> {
        let last = std::sync::Mutex::new(None::<Workflow>);
        let r = support::poll_until(timeout, || async {
            let wf = self.load(id).await?;
            let done = pred(&wf);
            *last.lock().unwrap() = Some(wf.clone());
            Ok(done.then_some(wf))
        })
        .await;
        r.with_context(|| {
            let last = last.lock().unwrap();
            format!(
                "waiting for {what}; last state: {}",
                last.as_ref()
                    .map(|w| flowpilot::cli::workflow::status_text(w, Utc::now()))
                    .unwrap_or_default()
            )
        })
    }

    async fn sim_get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.sim_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn set_faults(&self, plan: &FaultPlan) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_sim/faults", self.sim_url))
            .json(plan)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn ledger(&self) -> anyhow::Result<Value> {
        self.sim_get(&format!(
            "/_sim/ledger?domain={DOMAIN}&object_type={OBJECT_TYPE}"
        ))
        .await
    }

    async fn source_count(&self) -> anyhow::Result<u64> {
        let v = self
            .sim_get(&format!(
                "/_sim/source?connector_profile={PROFILE}&object=Account&from={FROM}&to={TO}"
            ))
            .await?;
        v["records"]
            .as_u64()
            .ok_or_else(|| anyhow!("no records in {v}"))
    }

    async fn runs(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.sim_get("/_sim/runs").await?;
        Ok(v["runs"].as_array().cloned().unwrap_or_default())
    }

    async fn flows(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.sim_get("/_sim/flows").await?;
        Ok(v["flows"].as_array().cloned().unwrap_or_default())
    }

    /// Health events delivered so far (drained from the tap queue), appended to `seen`.
    async fn health_until(
        &self,
        seen: &mut Vec<Value>,
        until: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let already = seen.clone();
        let got = support::drain_queue(
            &sqs,
            &self.stack.health_tap_url,
            |fresh| {
                let mut all = already.clone();
                all.extend_from_slice(fresh);
                until(&all)
            },
            Duration::from_secs(60),
        )
        .await?;
        seen.extend(got);
        Ok(())
    }

    /// The ledger holds exactly the source's records for [FROM, TO), each written once.
    async fn assert_ledger_complete(&self) -> anyhow::Result<()> {
        let ledger = self.ledger().await?;
        let source = self.source_count().await?;
        ensure!(source > 0, "the source has no records for the range");
        ensure!(
            ledger["distinct_records"].as_u64() == Some(source),
            "ledger {ledger} vs {source} source records"
        );
        ensure!(
            ledger["duplicate_writes"].as_u64() == Some(0),
            "duplicates in {ledger}"
        );
        Ok(())
    }

    async fn shutdown(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}

fn fast_runs() -> FaultPlan {
    FaultPlan {
        run_duration_ms: DurationRange { min: 150, max: 300 },
        ..FaultPlan::default()
    }
}

/// Counts health events by detail-type, de-duplicated on the stable `event_id`.
fn health_counts(events: &[Value]) -> BTreeMap<String, usize> {
    let mut ids = std::collections::BTreeSet::new();
    let mut counts = BTreeMap::new();
    for e in events {
        let id = e["detail"]["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if ids.insert(id) {
            *counts
                .entry(e["detail-type"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
    }
    counts
}

fn count(counts: &BTreeMap<String, usize>, kind: &str) -> usize {
    counts.get(kind).copied().unwrap_or(0)
}

fn runs_of<'a>(runs: &'a [Value], wf: &WorkflowId, batch: u32) -> Vec<&'a Value> {
    let name = format!("fp-{wf}-b{batch:04}");
    runs.iter()
        .filter(|r| r["flow_name"] == name.as_str())
        .collect()
}

/// Live; a failed or cancelled workflow will not get there, so stop waiting (with its state).
fn is_done(wf: &Workflow) -> bool {
    wf.status == WorkflowStatus::Live || wf.status.is_terminal()
}

fn ensure_live(wf: &Workflow) -> anyhow::Result<()> {
    ensure!(
        wf.status == WorkflowStatus::Live,
        "workflow ended {}:\n{}",
        wf.status.as_str(),
        flowpilot::cli::workflow::status_text(wf, Utc::now())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn salesforce_two_years_completes_in_twelve_batches_and_goes_live() -> anyhow::Result<()> {
    let env = Env::start("complete", fast_runs()).await?;
    let worker = env.spawn_worker("a", &[])?;
    let started = std::time::Instant::now();
    let id = env.create_workflow(&["--id", "sf-complete"]).await?;
    let wf = env
        .wait_for(&id, "live", WORKFLOW_DEADLINE, is_done)
        .await?;
    ensure_live(&wf)?;
    let elapsed = started.elapsed();
    ensure!(
        wf.batches.len() == 12,
        "expected 12 batches, got {}",
        wf.batches.len()
    );
    ensure!(wf.outbox.is_empty(), "outbox left: {:?}", wf.outbox);

    // Continuous integration: in the simulator, starting exactly at the backfill's end, active.
    let live = wf
        .live
        .as_ref()
        .ok_or_else(|| anyhow!("no live integration"))?;
    let appflow = aws_sdk_appflow::Client::new(&support::sdk_config(&env.sim_url).await);
    let flow = appflow
        .describe_flow()
        .flow_name(&live.flow_name)
        .send()
        .await?;
    ensure!(
        flow.flow_status().map(|s| s.as_str()) == Some("Active"),
        "live flow status {:?}",
        flow.flow_status()
    );
    let first = flow
        .trigger_config()
        .and_then(|t| t.trigger_properties())
        .and_then(|p| p.scheduled())
        .and_then(|s| s.first_execution_from())
        .ok_or_else(|| anyhow!("live flow has no firstExecutionFrom"))?;
    let expected: DateTime<Utc> = TO.parse()?;
    ensure!(
        first.secs() == expected.timestamp(),
        "firstExecutionFrom {first:?}"
    );
    let cp = aws_sdk_customerprofiles::Client::new(&support::sdk_config(&env.sim_url).await);
    let uri = live
        .uri
        .clone()
        .ok_or_else(|| anyhow!("no integration uri"))?;
    let integration = cp
        .get_integration()
        .domain_name(DOMAIN)
        .uri(&uri)
        .send()
        .await?;
    ensure!(integration.object_type_name() == Some(OBJECT_TYPE));

    env.assert_ledger_complete().await?;

    // No batch flow left behind: only the live flow remains.
    let flows = env.flows().await?;
    let names: Vec<&str> = flows.iter().filter_map(|f| f["name"].as_str()).collect();
    ensure!(names == [live.flow_name.as_str()], "flows left: {names:?}");

    let mut events = Vec::new();
    env.health_until(&mut events, |all| {
        count(&health_counts(all), "Workflow Completed") >= 1
    })
    .await?;
    let counts = health_counts(&events);
    ensure!(count(&counts, "Workflow Started") == 1, "{counts:?}");
    ensure!(count(&counts, "Batch Succeeded") == 12, "{counts:?}");
    ensure!(count(&counts, "Workflow Completed") == 1, "{counts:?}");
    for e in &events {
        ensure!(e["source"] == "flowpilot", "foreign event {e}");
        ensure!(e["detail"]["workflow_id"] == id.as_str(), "{e}");
    }

    // The operator view agrees.
    let status: Value = serde_json::from_str(
        &env.cli(&["workflow", "status", id.as_str(), "--json"])
            .await?,
    )?;
    ensure!(status["status"] == "live", "{status}");
    ensure!(status["totals"]["succeeded"] == 12, "{status}");
    ensure!(
        status["batches"].as_array().map(Vec::len) == Some(12),
        "{status}"
    );
    let text = env.cli(&["workflow", "status", id.as_str()]).await?;
    ensure!(text.contains("12/12 succeeded"), "{text}");
    let list = env.cli(&["workflow", "list", "--status", "live"]).await?;
    ensure!(list.contains(id.as_str()), "{list}");

    let metrics = worker.metrics(&env.http).await?;
    ensure!(metrics.contains("flowpilot_transitions_total"), "{metrics}");
    ensure!(
        metrics
            .contains("flowpilot_aws_requests_total{service=\"Appflow\",operation=\"StartFlow\"}"),
        "{metrics}"
    );
    eprintln!("12-batch workflow live after {elapsed:?}");
    drop(worker);
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_failures_of_batch_four_are_retried_and_the_ledger_is_complete()
-> anyhow::Result<()> {
    let mut faults = fast_runs();
    faults.run_failures = vec![RunFailure {
        flow_suffix: "-b0003".into(),
        attempts: vec![1, 2],
        from_attempt: None,
        to_attempt: None,
        message: "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded, try again later".into(),
        partial_fraction: 0.0,
    }];
    let env = Env::start("transient", faults).await?;
    let _worker = env.spawn_worker("a", &[])?;
    let id = env.create_workflow(&["--id", "sf-transient"]).await?;
    let wf = env
        .wait_for(&id, "live", WORKFLOW_DEADLINE, is_done)
        .await?;
    ensure_live(&wf)?;
    ensure!(
        wf.batches[3].attempt == 3,
        "batch 4 attempts: {}",
        wf.batches[3].attempt
    );

    let mut events = Vec::new();
    env.health_until(&mut events, |all| {
        count(&health_counts(all), "Workflow Completed") >= 1
    })
    .await?;
    let counts = health_counts(&events);
    ensure!(count(&counts, "Batch Retry Scheduled") == 2, "{counts:?}");
    ensure!(count(&counts, "Batch Succeeded") == 12, "{counts:?}");
    let runs = env.runs().await?;
    ensure!(
        runs_of(&runs, &id, 3).len() == 3,
        "batch 4 runs: {:?}",
        runs_of(&runs, &id, 3)
    );
    env.assert_ledger_complete().await?;
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permanent_failure_of_batch_six_fails_the_workflow_and_redrive_resumes_it()
-> anyhow::Result<()> {
    const MESSAGE: &str = "INVALID_FIELD: No such column 'Industry__c' on entity 'Account'";
    let mut faults = fast_runs();
    faults.run_failures = vec![RunFailure {
        flow_suffix: "-b0005".into(),
        attempts: vec![],
        from_attempt: None,
        to_attempt: None,
        message: MESSAGE.into(),
        partial_fraction: 0.0,
    }];
    let env = Env::start("permanent", faults).await?;
    let _worker = env.spawn_worker("a", &[])?;
    let id = env.create_workflow(&["--id", "sf-permanent"]).await?;
    env.wait_for(&id, "failed", WORKFLOW_DEADLINE, |w| {
        w.status == WorkflowStatus::Failed && w.outbox.is_empty()
    })
    .await?;

    let mut events = Vec::new();
    env.health_until(&mut events, |all| {
        count(&health_counts(all), "Workflow Failed") >= 1
    })
    .await?;
    let failed = events
        .iter()
        .find(|e| e["detail-type"] == "Workflow Failed")
        .ok_or_else(|| anyhow!("no Workflow Failed"))?;
    let detail = &failed["detail"];
    ensure!(
        detail["error"]
            .as_str()
            .is_some_and(|e| e.contains(MESSAGE)),
        "error in {detail}"
    );
    ensure!(
        detail["command"]
            .as_str()
            .is_some_and(|c| c.contains("redrive") && c.contains(id.as_str())),
        "command in {detail}"
    );

    // Batches 7-12 never started.
    let runs = env.runs().await?;
    for b in 6..12 {
        ensure!(runs_of(&runs, &id, b).is_empty(), "batch {} ran", b + 1);
    }
    // Redrive is refused for nothing else; then allowed for the failed workflow.
    env.set_faults(&fast_runs()).await?;
    let out = env.cli(&["workflow", "redrive", id.as_str()]).await?;
    ensure!(out.contains("redrive"), "{out}");
    let wf = env
        .wait_for(&id, "live after redrive", WORKFLOW_DEADLINE, |w| {
            w.status == WorkflowStatus::Live || w.status == WorkflowStatus::Cancelled
        })
        .await?;
    ensure_live(&wf)?;

    // Batches 1-5 ran exactly once; batch 6 twice (the failure and the redrive).
    let runs = env.runs().await?;
    for b in 0..5 {
        ensure!(runs_of(&runs, &id, b).len() == 1, "batch {} re-ran", b + 1);
    }
    ensure!(runs_of(&runs, &id, 5).len() == 2, "batch 6 runs");
    env.assert_ledger_complete().await?;

    // A live workflow cannot be redriven.
    let refused = Command::new(env!("CARGO_BIN_EXE_flowpilot"))
        .args(["workflow", "redrive", id.as_str()])
        .envs(env.process_env())
        .output()
        .await?;
    ensure!(
        refused.status.code() == Some(2),
        "redrive of a live workflow: {refused:?}"
    );
    ensure!(
        String::from_utf8_lossy(&refused.stderr).contains("only failed workflows"),
        "{refused:?}"
    );
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_three_never_runs_more_than_three_batches_at_once() -> anyhow::Result<()> {
    let faults = FaultPlan {
        run_duration_ms: DurationRange { min: 400, max: 700 },
        ..FaultPlan::default()
    };
    let env = Env::start("concurrency", faults).await?;
    let _worker = env.spawn_worker("a", &[])?;
    let id = env
        .create_workflow(&["--id", "sf-concurrent", "--concurrency", "3"])
        .await?;
    ensure_live(
        &env.wait_for(&id, "live", WORKFLOW_DEADLINE, is_done)
            .await?,
    )?;
    let runs = env.runs().await?;
    let prefix = format!("fp-{id}-b");
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for r in runs.iter().filter(|r| {
        r["flow_name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&prefix))
    }) {
        let start: DateTime<Utc> = serde_json::from_value(r["started_at"].clone())?;
        let end: DateTime<Utc> = serde_json::from_value(r["ended_at"].clone())
            .with_context(|| format!("run without end: {r}"))?;
        edges.push((start, 1));
        edges.push((end, -1));
    }
    // Ends before starts at the same instant: touching runs do not overlap.
    edges.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    ensure!(peak <= 3, "{peak} runs at once");
    ensure!(peak >= 2, "concurrency was not used (peak {peak})");
    env.assert_ledger_complete().await?;
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_go_to_the_dlq_and_are_logged_once() -> anyhow::Result<()> {
    let env = Env::start("poison", fast_runs()).await?;
    let worker = env.spawn_worker("a", &[])?;
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let mut ids = Vec::new();
    for body in ["this is not json", r#"{"hello":"world"}"#] {
        let out = sqs
            .send_message()
            .queue_url(&env.stack.queue_url)
            .message_body(body)
            .send()
            .await?;
        ids.push(out.message_id.unwrap_or_default());
    }
    // Both reach the DLQ (SQS redrives after 5 receives)...
    let dlq = support::poll_until(Duration::from_secs(90), || async {
        let out = sqs
            .receive_message()
            .queue_url(&env.stack.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await?;
        let got: Vec<String> = out
            .messages()
            .iter()
            .filter_map(|m| m.message_id.clone())
            .collect();
        Ok(ids.iter().all(|id| got.contains(id)).then_some(got))
    })
    .await
    .with_context(|| format!("worker log:\n{}", worker.log_text()))?;
    ensure!(dlq.len() == 2, "DLQ holds {dlq:?}");

    // ...each logged exactly once with its id and a reason.
    let log = worker.log_text();
    for id in &ids {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(id.as_str()) && l.contains("poison"))
            .collect();
        ensure!(
            lines.len() == 1,
            "message {id} logged {} times:\n{log}",
            lines.len()
        );
        ensure!(
            lines[0].contains("WARN") && lines[0].contains("reason"),
            "{}",
            lines[0]
        );
    }

    // The worker keeps going: it is healthy and still completes a workflow.
    let url = worker.metrics_url().await?;
    let health = env.http.get(format!("{url}/healthz")).send().await?;
    ensure!(health.status().is_success());
    let id = env
        .create_workflow_from("2025-09-01T00:00:00Z", &["--id", "after-poison"])
        .await?;
    ensure_live(
        &env.wait_for(&id, "live", WORKFLOW_DEADLINE, is_done)
            .await?,
    )?;
    let metrics = worker.metrics(&env.http).await?;
    let poison = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flowpilot_messages_poison_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    ensure!(poison >= 2, "poison counter {poison}");
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_backfill_exits_cleanly_and_a_new_worker_finishes() -> anyhow::Result<()> {
    const GRACE_SECS: u64 = 25;
    let faults = FaultPlan {
        run_duration_ms: DurationRange { min: 600, max: 900 },
        ..FaultPlan::default()
    };
    let env = Env::start("sigterm", faults).await?;
    let grace = format!("{GRACE_SECS}s");
    let mut first = env.spawn_worker("first", &[("FLOWPILOT_SHUTDOWN_GRACE", &grace)])?;
    let id = env.create_workflow(&["--id", "sf-sigterm"]).await?;
    env.wait_for(&id, "3 batches done", WORKFLOW_DEADLINE, |w| {
        w.batches
            .iter()
            .filter(|b| b.status == flowpilot::core::model::BatchStatus::Succeeded)
            .count()
            >= 3
    })
    .await?;

    let pid = first.pid()?;
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    ensure!(killed.success(), "kill -TERM {pid}");
    let status = tokio::time::timeout(Duration::from_secs(GRACE_SECS + 5), first.child.wait())
        .await
        .map_err(|_| {
            anyhow!(
                "worker did not exit within its deadline:\n{}",
                first.log_text()
            )
        })??;
    ensure!(
        status.success(),
        "worker exit status {status}:\n{}",
        first.log_text()
    );
    ensure!(
        first.log_text().contains("worker stopped"),
        "{}",
        first.log_text()
    );
    let wf = env.load(&id).await?;
    ensure!(
        wf.status == WorkflowStatus::Backfilling,
        "killed too late: {:?}",
        wf.status
    );

    let _second = env.spawn_worker("second", &[])?;
    ensure_live(
        &env.wait_for(&id, "live after restart", WORKFLOW_DEADLINE, is_done)
            .await?,
    )?;
    env.assert_ledger_complete().await?;
    env.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refuses_to_start_without_its_settings() -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_flowpilot"))
        .arg("worker")
        .env_remove("FLOWPILOT_QUEUE_URL")
        .env("FLOWPILOT_TABLE", "t")
        .env("FLOWPILOT_HEALTH_BUS", "b")
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !stderr.contains("FLOWPILOT_QUEUE_URL") {
        bail!("unexpected: {:?} {stderr}", out.status);
    }
    Ok(())
}
