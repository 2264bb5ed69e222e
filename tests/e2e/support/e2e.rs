//! One isolated end-to-end stack per test: a private moto server with the flowpilot template
//! deployed, an in-process AppFlow + Customer Profiles simulator enforcing IAM with the
//! deployed roles' policies (and fronting moto), and helpers to run real `flowpilot`
//! processes against them — workers as the worker task role, the CLI as the operator role —
//! and to read what happened (state table, simulator ledger / runs / events, health events,
//! worker metrics).
//!
//! Everything waits with deadlines ([`super::poll_until`]); nothing sleeps to synchronise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use flowpilot::core::ids::WorkflowId;
use flowpilot::core::model::Workflow;
use flowpilot::store::Store as _;
use flowpilot::store::dynamo::DynamoStore;
use flowpilot_sim::{EventsConfig, FaultPlan, SimConfig, SimHandle, SourceConfig};
use serde_json::Value;
use tokio::process::{Child, Command};

use super::{ADMIN_PROFILE, Moto, OPERATOR_PROFILE, StackOutputs, WORKER_PROFILE};

/// The domain key deploy.py passes as `DomainKmsKeyArn`: the worker role may have AppFlow
/// create grants on this key only.
pub const KMS_ARN: &str =
    "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000";
pub const DOMAIN: &str = "demo";
pub const OBJECT_TYPE: &str = "Account";
pub const PROFILE: &str = "sf-test";
/// Interval of the state-table and queue polls: moto is one Python process, and every poll
/// competes with the workers for it.
pub const POLL: Duration = Duration::from_millis(200);
/// The marker a Rust panic leaves on stderr.
pub const PANIC_MARKER: &str = "panicked at";

/// How the simulator of one test is set up.
#[derive(Clone, Debug)]
pub struct SimSetup {
    /// Real milliseconds per scheduled-flow tick; an hour keeps live flows quiet so the ledger
    /// holds exactly what the backfill wrote.
    pub tick_ms: u64,
    /// Applied after the domain exists (so the test's own set-up calls are never faulted).
    pub faults: FaultPlan,
    pub seed: u64,
    /// Object types created in [`DOMAIN`] (one per workflow when workflows must not share a
    /// ledger).
    pub object_types: Vec<String>,
}

impl Default for SimSetup {
    fn default() -> Self {
        Self {
            tick_ms: 3_600_000,
            faults: FaultPlan::default(),
            seed: 42,
            object_types: vec![OBJECT_TYPE.to_owned()],
        }
    }
}

/// One isolated local stack: moto + deployed template + simulator.
pub struct Env {
    pub moto: Moto,
    pub stack: StackOutputs,
    sim: Option<SimHandle>,
    pub sim_url: String,
    pub sdk: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub store: DynamoStore,
    pub http: reqwest::Client,
    pub name: String,
}

/// A `flowpilot worker` process, killed on drop; stderr goes to a log file.
pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
    pub label: String,
}

impl Worker {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics endpoint the worker logged (it binds 127.0.0.1:0).
    pub async fn metrics_url(&self) -> anyhow::Result<String> {
        const MARKER: &str = "serving /healthz and /metrics on ";
        super::poll_until(Duration::from_secs(30), || async {
            Ok(self.log_text().lines().find_map(|l| {
                l.split_once(MARKER)
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_owned())
            }))
        })
        .await
        .with_context(|| {
            format!(
                "worker {} never logged its metrics address:\n{}",
                self.label,
                self.log_text()
            )
        })
    }

    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let url = self.metrics_url().await?;
        Ok(http
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The process id (for signals other than SIGKILL).
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow!("worker {} already exited", self.label))
    }

    /// Still running (not exited, not killed)?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (`kill -9`) and reap: the process gets no chance to clean up.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.start_kill().context("SIGKILL")?;
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .map_err(|_| anyhow!("worker {} did not die after SIGKILL", self.label))??;
        Ok(())
    }

    /// Fails if the worker's log shows a panic.
    pub fn assert_no_panic(&self) -> anyhow::Result<()> {
        let log = self.log_text();
        ensure!(
            !log.contains(PANIC_MARKER),
            "worker {} panicked:\n{}",
            self.label,
            tail(&log, 40)
        );
        Ok(())
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reliability-test knobs for worker processes: the reconciler ticks every second and looks at
/// runs after 2 s, lost retries are restarted after 2 s.
pub fn fast_worker_env() -> Vec<(String, String)> {
    [
        ("FLOWPILOT_RECONCILE_EVERY", "1s"),
        ("FLOWPILOT_DESCRIBE_AFTER", "2s"),
        ("FLOWPILOT_RETRY_GRACE", "2s"),
        // Far above any run's duration: no test here wants a stall verdict.
        ("FLOWPILOT_MAX_RUN", "10m"),
        ("FLOWPILOT_SHUTDOWN_GRACE", "5s"),
        // What the worker defers is written soon, so tests see a settled item quickly.
        ("FLOWPILOT_FLUSH_AFTER", "200ms"),
        // The shared run budget has its own scenario (`budget`); elsewhere its refusals would
        // add attempts the exactly-once assertions count.
        ("FLOWPILOT_PROFILE_RUN_LIMIT", "0"),
        ("FLOWPILOT_FLOW_LIMIT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// What `workflow create` is asked for (Salesforce accounts into [`DOMAIN`]).
#[derive(Clone, Debug)]
pub struct WorkflowArgs {
    pub id: String,
    pub from: String,
    pub to: String,
    pub batch_size: String,
    pub concurrency: u32,
    pub object_type: String,
    /// Further flags, e.g. `--auto-rebuild`.
    pub extra: Vec<String>,
}

impl WorkflowArgs {
    pub fn new(id: &str, from: &str, to: &str, batch_size: &str) -> Self {
        Self {
            id: id.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            batch_size: batch_size.to_owned(),
            concurrency: 1,
            object_type: OBJECT_TYPE.to_owned(),
            extra: Vec::new(),
        }
    }

    fn to_cli(&self) -> Vec<String> {
        let concurrency = self.concurrency.to_string();
        let mut args: Vec<String> = [
            "workflow",
            "create",
            "--id",
            &self.id,
            "--connector",
            "salesforce",
            "--connector-profile",
            PROFILE,
            "--object",
            "Account",
            "--domain",
            DOMAIN,
            "--object-type",
            &self.object_type,
            "--from",
            &self.from,
            "--to",
            &self.to,
            "--batch-size",
            &self.batch_size,
            // A bulk phase whatever the range: these tests are about batches.
            "--bulk-threshold",
            "P1D",
            "--concurrency",
            &concurrency,
            "--retry-base",
            "200ms",
            "--retry-cap",
            "1s",
            "--kms-arn",
            KMS_ARN,
            "--json",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// Ledger vs source for one object type and window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerCheck {
    pub source: u64,
    pub distinct: u64,
    pub duplicates: u64,
}

impl LedgerCheck {
    pub fn missing(&self) -> u64 {
        self.source.saturating_sub(self.distinct)
    }

    /// Every source record written, none twice (and none from outside the window).
    pub fn ensure_complete(&self, what: &str) -> anyhow::Result<()> {
        ensure!(
            self.source > 0,
            "{what}: the source has no records in the window"
        );
        ensure!(
            self.distinct == self.source && self.duplicates == 0,
            "{what}: ledger incomplete or duplicated: {self:?}"
        );
        Ok(())
    }
}

impl Env {
    pub async fn start(name: &str, setup: SimSetup) -> anyhow::Result<Env> {
        Self::start_in(name, setup, "ecs").await
    }

    /// [`Env::start`] with the template deployed in `worker_mode` (`ecs` or `lambda`): in
    /// `lambda`, the worker profile holds the function's role, assumed as Lambda assumes it.
    pub async fn start_in(
        name: &str,
        setup: SimSetup,
        worker_mode: &'static str,
    ) -> anyhow::Result<Env> {
        let moto = Moto::start().await?;
        let mut opts = super::DeployOptions::standard(&moto);
        opts.worker_mode = worker_mode;
        let stack = super::deploy_with(&moto, &opts).await?;
        let sim = flowpilot_sim::start(SimConfig {
            tick_ms: setup.tick_ms,
            seed: setup.seed,
            source: SourceConfig::default(),
            events: EventsConfig {
                disabled: false,
                endpoint_url: Some(moto.url.clone()),
                access_key_id: Some(super::ACCESS_KEY_ID.to_owned()),
                secret_access_key: Some(super::SECRET_ACCESS_KEY.to_owned()),
            },
            // IAM is enforced (the default) with the identities the deployment created,
            // loaded just below.
            ..SimConfig::default()
        })
        .await?;
        let sim_url = sim.url();
        load_identities(&sim_url, &stack).await?;
        let sdk = super::sdk_config(&moto.url).await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &stack.table);
        let env = Env {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            moto,
            stack,
            sim: Some(sim),
            sim_url,
            sdk,
            store,
            http: reqwest::Client::new(),
            name: name.to_owned(),
        };
        env.create_domain(&setup.object_types).await?;
        env.set_faults(&setup.faults).await?;
        Ok(env)
    }

    /// SDK configuration holding `profile`'s identity, every service at the simulator.
    pub async fn sdk_as(&self, profile: &str) -> SdkConfig {
        super::profile_sdk_config(&self.sim_url, &self.stack.identities, profile).await
    }

    /// The operator's connector profile, Customer Profiles domain and object types, in the
    /// simulator, created by the account administrator.
    async fn create_domain(&self, object_types: &[String]) -> anyhow::Result<()> {
        use aws_sdk_appflow::types::{
            ConnectionMode, ConnectorProfileConfig, ConnectorProfileProperties, ConnectorType,
            SalesforceConnectorProfileProperties,
        };
        let admin = self.sdk_as(ADMIN_PROFILE).await;
        let appflow = aws_sdk_appflow::Client::new(&admin);
        let salesforce = SalesforceConnectorProfileProperties::builder()
            .instance_url("https://example.my.salesforce.com")
            .build();
        appflow
            .create_connector_profile()
            .connector_profile_name(PROFILE)
            .connector_type(ConnectorType::Salesforce)
            .connection_mode(ConnectionMode::Public)
            .connector_profile_config(
                ConnectorProfileConfig::builder()
                    .connector_profile_properties(
                        ConnectorProfileProperties::builder()
                            .salesforce(salesforce)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .context("CreateConnectorProfile in the simulator")?;
        let cp = aws_sdk_customerprofiles::Client::new(&admin);
        cp.create_domain()
            .domain_name(DOMAIN)
            .default_expiration_days(366)
            .default_encryption_key(KMS_ARN)
            .send()
            .await
            .context("CreateDomain in the simulator")?;
        for t in object_types {
            cp.put_profile_object_type()
                .domain_name(DOMAIN)
                .object_type_name(t)
                .description("Salesforce accounts")
                .send()
                .await
                .with_context(|| format!("PutProfileObjectType {t} in the simulator"))?;
        }
        Ok(())
    }

    /// Environment of a flowpilot process holding `profile`'s identity.
    pub fn process_env(&self, profile: &str) -> Vec<(String, String)> {
        let mut env = super::aws_env(&self.sim_url, &self.stack.identities, profile);
        env.extend(self.stack.flowpilot_env());
        env
    }

    /// Starts a worker with [`fast_worker_env`] plus `extra` (which wins).
    pub fn spawn_worker(&self, label: &str, extra: &[(&str, &str)]) -> anyhow::Result<Worker> {
        let mut defaults = fast_worker_env();
        // A panic message is all the test needs, not a backtrace.
        defaults.push(("RUST_BACKTRACE".to_owned(), "0".to_owned()));
        self.spawn_worker_process("reliability", label, defaults, extra)
    }

    /// Starts a worker with the production timings (none of [`fast_worker_env`]) plus `extra`
    /// (which wins); its log is `worker-{name}-{label}-{port}.log` in the scratch directory.
    pub fn spawn_default_worker(
        &self,
        label: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Worker> {
        self.spawn_worker_process("worker", label, Vec::new(), extra)
    }

    /// A `flowpilot worker` with the stack's environment, then `defaults`, a loopback metrics
    /// address and info logging, then `extra`.
    fn spawn_worker_process(
        &self,
        log_prefix: &str,
        label: &str,
        defaults: Vec<(String, String)>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Worker> {
        let log = super::scratch_dir().join(format!(
            "{log_prefix}-{}-{label}-{}.log",
            self.name, self.moto.port
        ));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowpilot"));
        cmd.arg("worker")
            .envs(self.process_env(WORKER_PROFILE))
            .envs(defaults)
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
        Ok(Worker {
            child,
            log,
            label: label.to_owned(),
        })
    }

    /// Runs the CLI to completion; fails unless it exits 0.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli_output(args).await?;
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

    /// Runs the CLI to completion, whatever its exit status (for tests of refusals).
    pub async fn cli_output(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_flowpilot"))
            .args(args)
            .envs(self.process_env(OPERATOR_PROFILE))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?)
    }

    /// `flowpilot workflow create`; returns the workflow id.
    pub async fn create_workflow(&self, args: &WorkflowArgs) -> anyhow::Result<WorkflowId> {
        let argv = args.to_cli();
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self.cli(&refs).await?;
        let v: Value =
            serde_json::from_str(out.trim()).with_context(|| format!("create printed {out}"))?;
        let id = v["workflow_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no workflow_id in {v}"))?;
        Ok(WorkflowId::new(id)?)
    }

    /// Writes, as an observer straight into moto, an active workflow item whose document is
    /// JSON with a spec but no workflow this flowpilot can read (what an incompatible version
    /// or a hand edit leaves): the reconcile pass must skip it. Returns its key.
    pub async fn put_unreadable_item(&self, id: &str) -> anyhow::Result<String> {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let key = format!("wf#{id}");
        // `status` first: reading stops there, with a reason that names "exploded".
        let doc = format!(
            r#"{{"status":"exploded","id":"{id}","spec":{{"domain":"{DOMAIN}","object_type":"{OBJECT_TYPE}","connector":"salesforce"}}}}"#
        );
        aws_sdk_dynamodb::Client::new(&self.sdk)
            .put_item()
            .table_name(&self.stack.table)
            .item("pk", A::S(key.clone()))
            .item("version", A::N("7".into()))
            .item("status", A::S("backfilling".into()))
            // In the sparse `active` index, as every active workflow is.
            .item("active_shard", A::S("0".into()))
            .item("doc", A::S(doc))
            .item("updated_at", A::S(rfc3339(Utc::now())))
            .send()
            .await
            .context("PutItem of the unreadable item (moto, as an observer)")?;
        Ok(key)
    }

    /// The document of budget item `key` (`budget#profile#…`), read straight from moto as an
    /// observer; `null` if the item does not exist.
    pub async fn budget_ledger(&self, key: &str) -> anyhow::Result<serde_json::Value> {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let out = aws_sdk_dynamodb::Client::new(&self.sdk)
            .get_item()
            .table_name(&self.stack.table)
            .key("pk", A::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .context("GetItem of a budget item (moto, as an observer)")?;
        match out.item.as_ref().and_then(|i| i.get("doc")) {
            Some(A::S(doc)) => Ok(serde_json::from_str(doc)?),
            _ => Ok(serde_json::Value::Null),
        }
    }

    pub async fn load(&self, id: &WorkflowId) -> anyhow::Result<Workflow> {
        self.store
            .load(id)
            .await?
            .ok_or_else(|| anyhow!("workflow {id} not in the table"))
    }

    /// Polls the state table until `pred` holds.
    pub async fn wait_for(
        &self,
        id: &WorkflowId,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Workflow) -> bool,
    ) -> anyhow::Result<Workflow> {
        let last = std::sync::Mutex::new(None::<Workflow>);
        let r = poll_every(POLL, timeout, || async {
            let wf = self.load(id).await?;
            let done = pred(&wf);
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(wf.clone());
            Ok(done.then_some(wf))
        })
        .await;
        r.with_context(|| {
            let last = last.lock().unwrap_or_else(|p| p.into_inner());
            format!(
                "waiting for {what}; last state: {}",
                last.as_ref()
                    .map(|w| flowpilot::cli::workflow::status_text(w, Utc::now()))
                    .unwrap_or_default()
            )
        })
    }

    pub async fn sim_get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.sim_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn set_faults(&self, plan: &FaultPlan) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_sim/faults", self.sim_url))
            .json(plan)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Ledger vs source for `object_type` over `[from, to)`.
    pub async fn ledger_check(
        &self,
        object_type: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<LedgerCheck> {
        let window = format!("&from={}&to={}", rfc3339(from), rfc3339(to));
        self.ledger_vs_source(object_type, &window, from, to).await
    }

    /// Every write the ledger holds for `object_type`, whatever its time, vs the source's
    /// records in `[from, to)`: unlike [`Env::ledger_check`], a record written from outside the
    /// window counts too.
    pub async fn ledger_check_all_writes(
        &self,
        object_type: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<LedgerCheck> {
        self.ledger_vs_source(object_type, "", from, to).await
    }

    /// `ledger_query` narrows `/_sim/ledger` (`&from=..&to=..`, or nothing for all of it).
    async fn ledger_vs_source(
        &self,
        object_type: &str,
        ledger_query: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<LedgerCheck> {
        let (f, t) = (rfc3339(from), rfc3339(to));
        let ledger = self
            .sim_get(&format!(
                "/_sim/ledger?domain={DOMAIN}&object_type={object_type}{ledger_query}"
            ))
            .await?;
        let source = self
            .sim_get(&format!(
                "/_sim/source?connector_profile={PROFILE}&object=Account&from={f}&to={t}"
            ))
            .await?;
        let num = |v: &Value, k: &str| v[k].as_u64().ok_or_else(|| anyhow!("no `{k}` in {v}"));
        Ok(LedgerCheck {
            source: num(&source, "records")?,
            distinct: num(&ledger, "distinct_records")?,
            duplicates: num(&ledger, "duplicate_writes")?,
        })
    }

    /// Ledger vs source over a workflow's whole `[from, to)` (its object type).
    pub async fn workflow_ledger(&self, wf: &Workflow) -> anyhow::Result<LedgerCheck> {
        self.ledger_check(wf.spec.object_type.as_str(), wf.spec.from, wf.spec.to)
            .await
    }

    /// Every run the simulator started (`/_sim/runs`).
    pub async fn runs(&self) -> anyhow::Result<Value> {
        self.sim_get("/_sim/runs").await
    }

    /// Every flow the simulator holds (`/_sim/flows`).
    pub async fn flows(&self) -> anyhow::Result<Value> {
        self.sim_get("/_sim/flows").await
    }

    /// Health events delivered so far (drained from the tap queue), appended to `seen`, until
    /// `until` holds for everything seen.
    pub async fn health_until(
        &self,
        seen: &mut Vec<Value>,
        timeout: Duration,
        until: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let already = seen.clone();
        let got = super::drain_queue(
            &self.sqs,
            &self.stack.health_tap_url,
            |fresh| {
                let mut all = already.clone();
                all.extend_from_slice(fresh);
                until(&all)
            },
            timeout,
        )
        .await?;
        seen.extend(got);
        Ok(())
    }

    /// Visible messages in the DLQ (moto counts them exactly).
    pub async fn dlq_depth(&self) -> anyhow::Result<u64> {
        Ok(self.queue_counts(&self.stack.dlq_url).await?.0)
    }

    /// (visible, in flight, delayed) messages of a queue.
    pub async fn queue_counts(&self, url: &str) -> anyhow::Result<(u64, u64, u64)> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await?;
        let get = |name: A| -> anyhow::Result<u64> {
            let v = out
                .attributes()
                .and_then(|a| a.get(&name))
                .ok_or_else(|| anyhow!("no {name:?} for {url}"))?;
            Ok(v.parse()?)
        };
        Ok((
            get(A::ApproximateNumberOfMessages)?,
            get(A::ApproximateNumberOfMessagesNotVisible)?,
            get(A::ApproximateNumberOfMessagesDelayed)?,
        ))
    }

    /// Sends raw bodies to the work queue: batches of up to 10 that stay under SQS's batch
    /// size limit, anything bigger on its own.
    pub async fn send_raw(&self, bodies: &[String]) -> anyhow::Result<()> {
        const BATCH_BYTES: usize = 256 * 1024;
        let mut batch: Vec<&str> = Vec::new();
        let mut bytes = 0;
        for body in bodies {
            if batch.len() == 10 || (!batch.is_empty() && bytes + body.len() > BATCH_BYTES) {
                self.send_batch(&batch).await?;
                batch.clear();
                bytes = 0;
            }
            bytes += body.len();
            batch.push(body);
        }
        if !batch.is_empty() {
            self.send_batch(&batch).await?;
        }
        Ok(())
    }

    async fn send_batch(&self, bodies: &[&str]) -> anyhow::Result<()> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(*b)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(&self.stack.queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
        ensure!(
            out.failed.is_empty(),
            "SendMessageBatch failed for {:?}",
            out.failed
        );
        Ok(())
    }

    /// Creates every workflow with up to `parallel` CLI processes at once (in order).
    pub async fn create_workflows(
        &self,
        all: &[WorkflowArgs],
        parallel: usize,
    ) -> anyhow::Result<Vec<WorkflowId>> {
        let mut ids = Vec::with_capacity(all.len());
        for chunk in all.chunks(parallel.max(1)) {
            let mut children = Vec::new();
            for args in chunk {
                let child = Command::new(env!("CARGO_BIN_EXE_flowpilot"))
                    .args(args.to_cli())
                    .envs(self.process_env(OPERATOR_PROFILE))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()?;
                children.push(child);
            }
            for (child, args) in children.into_iter().zip(chunk) {
                let out = child.wait_with_output().await?;
                ensure!(
                    out.status.success(),
                    "workflow create {} failed: {}",
                    args.id,
                    String::from_utf8_lossy(&out.stderr)
                );
                ids.push(WorkflowId::new(&args.id)?);
            }
        }
        Ok(ids)
    }

    pub async fn shutdown(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}

/// Hands the deployed identities to the simulator (`POST /_sim/iam`): from then on it
/// authorises every call against the deployed roles' policies.
pub async fn load_identities(sim_url: &str, stack: &StackOutputs) -> anyhow::Result<()> {
    reqwest::Client::new()
        .post(format!("{sim_url}/_sim/iam"))
        .json(&stack.iam_document()?)
        .send()
        .await?
        .error_for_status()
        .context("POST /_sim/iam")?;
    Ok(())
}

/// [`super::poll_until`] with a chosen interval: calls `check` until it yields `Some`, failing
/// once `timeout` has passed.
pub async fn poll_every<T, F, Fut>(
    interval: Duration,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await.context("poll: check failed")? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Counts health events by detail-type, de-duplicated on the stable `event_id`.
pub fn health_counts(events: &[Value]) -> BTreeMap<String, usize> {
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

pub fn count(counts: &BTreeMap<String, usize>, kind: &str) -> usize {
    counts.get(kind).copied().unwrap_or(0)
}

/// The flow of batch `index` (0-based) of workflow `id`.
pub fn batch_flow(id: &WorkflowId, index: u32) -> String {
    format!("fp-{id}-b{index:04}")
}

/// The continuous integration's flow of workflow `id`, link generation 1.
pub fn live_flow(id: &WorkflowId) -> String {
    live_flow_of(id, 1)
}

/// The continuous integration's flow of link generation `generation` of workflow `id`: every
/// generation after the first has a name of its own, so its runs and reports are told apart.
pub fn live_flow_of(id: &WorkflowId, generation: u32) -> String {
    if generation <= 1 {
        format!("fp-{id}-live")
    } else {
        format!("fp-{id}-live-g{generation}")
    }
}

/// Runs of flow `name` in a `/_sim/runs` answer.
pub fn runs_of<'a>(runs: &'a Value, name: &str) -> Vec<&'a Value> {
    runs["runs"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["flow_name"] == name).collect())
        .unwrap_or_default()
}

/// The sum of a Prometheus counter over all its label sets.
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
