//! A private moto server per test, and the flowpilot CloudFormation stack deployed into it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use super::{infra_local, scratch_dir, venv_bin};

/// How long moto may take to answer after it was spawned (a cold Python start is ~1 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long creating the virtualenv may take (first run installs moto and cfn-lint).
const VENV_TIMEOUT: Duration = Duration::from_secs(300);
/// How long deploy.py may take (the first CloudFormation call in moto is slow).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at a fresh port when another process grabs the one we picked.
const START_ATTEMPTS: usize = 5;

/// A moto server on a free loopback port, killed when dropped.
pub struct Moto {
    /// `http://127.0.0.1:PORT`, suitable for `AWS_ENDPOINT_URL`.
    pub url: String,
    pub port: u16,
    /// moto's request log, kept for post-mortems.
    pub log: PathBuf,
    child: Child,
}

impl Moto {
    /// Ensures the project virtualenv (`infra/local/stack venv`), starts moto
    /// (`infra/local/moto_server.py`) on a free 127.0.0.1 port and waits until it answers.
    pub async fn start() -> anyhow::Result<Moto> {
        ensure_venv().await?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match Self::start_on(port).await {
                Ok(moto) => return Ok(moto),
                // Usually a port collision: someone bound it between our probe and moto.
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("moto did not start")))
    }

    async fn start_on(port: u16) -> anyhow::Result<Moto> {
        let log = scratch_dir().join(format!("moto-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("creating moto log {}", log.display()))?;
        // moto_server without per-request costs that model nothing (infra/local/moto_server.py).
        let child = Command::new(venv_bin("python"))
            .arg(infra_local().join("moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("spawning infra/local/moto_server.py with infra/local/.venv/bin/python")?;
        let mut moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            port,
            log,
            child,
        };
        moto.wait_ready().await?;
        Ok(moto)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let probe = format!("{}/moto-api/", self.url);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "moto_server exited with {status} during start-up:\n{}",
                    self.log_tail()
                );
            }
            if http.get(&probe).send().await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "moto_server did not answer at {probe} within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of moto's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Forgets all state (`POST /moto-api/reset`).
    pub async fn reset(&self) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SIGKILL, then reap so no zombie outlives the test (kill_on_drop is the backstop).
        if self.child.start_kill().is_ok() {
            for _ in 0..400 {
                match self.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }
}

/// Picks a currently free loopback port (bind :0, read, release). The caller retries if
/// the port is taken again before it binds.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `infra/local/stack venv` once per test process (the script itself serialises
/// concurrent processes with flock and is silent when the venv is current).
pub async fn ensure_venv() -> anyhow::Result<()> {
    static VENV: OnceCell<Result<(), String>> = OnceCell::const_new();
    VENV.get_or_init(|| async {
        let run = Command::new(infra_local().join("stack"))
            .arg("venv")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(VENV_TIMEOUT, run).await {
            Err(_) => Err(format!("infra/local/stack venv took over {VENV_TIMEOUT:?}")),
            Ok(Err(e)) => Err(format!("running infra/local/stack venv: {e}")),
            Ok(Ok(out)) if !out.status.success() => Err(format!(
                "infra/local/stack venv failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
            Ok(Ok(_)) => Ok(()),
        }
    })
    .await
    .clone()
    .map_err(|e| anyhow!(e))
}

/// The local identities deploy.py set up for one deployment (see its module doc).
#[derive(Debug, Clone)]
pub struct Identities {
    /// The identity document the simulator enforces IAM with (`POST /_sim/iam`).
    pub iam_file: PathBuf,
    /// `AWS_CONFIG_FILE`: profiles flowpilot-admin, flowpilot-worker, flowpilot-operator.
    pub config_file: PathBuf,
    /// `AWS_SHARED_CREDENTIALS_FILE`: the base keys of the admin and the ECS stand-in.
    pub credentials_file: PathBuf,
    pub operator_role_arn: String,
    /// The administrator's access key id (the simulator resolves callers by key).
    pub admin_key_id: String,
}

/// Outputs of the flowpilot stack deployed into moto. Queue URLs are moto's own.
#[derive(Debug, Clone)]
pub struct StackOutputs {
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub delivery_dlq_url: String,
    pub table: String,
    pub health_bus: String,
    pub health_bus_arn: String,
    /// Observation queue receiving every `source: flowpilot` event of the health bus.
    pub health_tap_url: String,
    pub alert_topic_arn: String,
    pub worker_role_arn: String,
    pub operator_policy_arn: String,
    /// The managed workflows' execution role (`AppFlowExecutionRole`).
    pub execution_role_arn: String,
    pub identities: Identities,
    /// `ecs` or `lambda` (the template's WorkerMode).
    pub worker_mode: String,
    /// Logical ids of the resources the stack has in moto.
    pub created: Vec<String>,
    /// Resources of the template (in this mode) that moto did not create or deploy.py
    /// removed, each with why: (logical id, type, reason).
    pub not_created: Vec<(String, String, String)>,
}

impl StackOutputs {
    /// The `FLOWPILOT_*` resource variables a worker needs (add [`super::aws_env`]).
    pub fn flowpilot_env(&self) -> Vec<(String, String)> {
        [
            ("FLOWPILOT_QUEUE_URL", &self.queue_url),
            ("FLOWPILOT_DLQ_URL", &self.dlq_url),
            ("FLOWPILOT_TABLE", &self.table),
            ("FLOWPILOT_HEALTH_BUS", &self.health_bus),
            ("FLOWPILOT_HEALTH_TAP_URL", &self.health_tap_url),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }

    /// The identity document, for `POST /_sim/iam`.
    pub fn iam_document(&self) -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(&self.identities.iam_file)
            .with_context(|| format!("reading {}", self.identities.iam_file.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// How to deploy: which template, under which names, where the identity files go.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// A template file (YAML or JSON); `None` is infra/flowpilot.yaml.
    pub template: Option<PathBuf>,
    pub stack_name: String,
    /// Prefix of every named resource, so several stacks can share one moto.
    pub name_prefix: String,
    /// Where deploy.py writes iam.json and the profile files.
    pub state_dir: PathBuf,
    /// The template's WorkerMode: `ecs` (the default) or `lambda`.
    pub worker_mode: &'static str,
}

impl DeployOptions {
    /// infra/flowpilot.yaml as stack `flowpilot`, files in a fresh scratch directory.
    pub fn standard(moto: &Moto) -> Self {
        Self {
            template: None,
            stack_name: "flowpilot".to_owned(),
            name_prefix: "flowpilot".to_owned(),
            state_dir: scratch_dir().join(format!("identities-{}", moto.port)),
            worker_mode: "ecs",
        }
    }
}

/// Deploys `infra/flowpilot.yaml` into `moto` ([`DeployOptions::standard`]), creates the health
/// tap queue and rule and the local identities, and returns the outputs.
pub async fn deploy_stack(moto: &Moto) -> anyhow::Result<StackOutputs> {
    deploy_with(moto, &DeployOptions::standard(moto)).await
}

/// [`deploy_stack`] with chosen options.
pub async fn deploy_with(moto: &Moto, opts: &DeployOptions) -> anyhow::Result<StackOutputs> {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(infra_local().join("deploy.py"))
        .args(["--endpoint", &moto.url, "--health-tap"])
        .args(["--stack-name", &opts.stack_name])
        .args(["--name-prefix", &opts.name_prefix])
        .args(["--worker-mode", opts.worker_mode])
        .arg("--state-dir")
        .arg(&opts.state_dir);
    if let Some(t) = &opts.template {
        cmd.arg("--template").arg(t);
    }
    let run = cmd.stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(DEPLOY_TIMEOUT, run)
        .await
        .map_err(|_| anyhow!("deploy.py took over {DEPLOY_TIMEOUT:?}"))?
        .context("running infra/local/deploy.py")?;
    if !out.status.success() {
        bail!(
            "deploy.py failed ({}):\n{}\nmoto log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            moto.log_tail()
        );
    }
    let outputs: Value =
        serde_json::from_slice(&out.stdout).context("deploy.py printed no JSON object")?;
    let get = |key: &str| -> anyhow::Result<String> {
        outputs
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("stack output {key} missing in {outputs}"))
    };
    Ok(StackOutputs {
        queue_url: get("QueueUrl")?,
        queue_arn: get("QueueArn")?,
        dlq_url: get("DlqUrl")?,
        delivery_dlq_url: get("DeliveryDlqUrl")?,
        table: get("TableName")?,
        health_bus: get("HealthBusName")?,
        health_bus_arn: get("HealthBusArn")?,
        health_tap_url: get("HealthTapUrl")?,
        alert_topic_arn: get("AlertTopicArn")?,
        worker_role_arn: get("WorkerRoleArn")?,
        operator_policy_arn: get("OperatorPolicyArn")?,
        execution_role_arn: get("AppFlowExecutionRoleArn")?,
        worker_mode: get("WorkerMode")?,
        created: outputs["Created"]
            .as_array()
            .ok_or_else(|| anyhow!("deploy.py printed no Created list"))?
            .iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect(),
        not_created: outputs["NotCreated"]
            .as_array()
            .ok_or_else(|| anyhow!("deploy.py printed no NotCreated list"))?
            .iter()
            .map(|m| {
                let field = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                (
                    field("LogicalResourceId"),
                    field("ResourceType"),
                    field("Reason"),
                )
            })
            .collect(),
        identities: Identities {
            iam_file: PathBuf::from(get("IamFile")?),
            config_file: PathBuf::from(get("AwsConfigFile")?),
            credentials_file: PathBuf::from(get("AwsCredentialsFile")?),
            operator_role_arn: get("OperatorRoleArn")?,
            admin_key_id: get("AdminAccessKeyId")?,
        },
    })
}

/// infra/flowpilot.yaml (or `path`) as JSON, short-form tags in long form, decoded by
/// cfn-lint's own loader (`infra/local/template-json`).
pub async fn template_json(path: Option<&std::path::Path>) -> anyhow::Result<Value> {
    ensure_venv().await?;
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(infra_local().join("template-json"));
    if let Some(p) = path {
        cmd.arg(p);
    }
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running infra/local/template-json")?;
    if !out.status.success() {
        bail!(
            "template-json failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
