//! The harness of the end-to-end tests (and of the throughput benchmark, which includes it).
//!
//! - [`moto`]: a private moto server per test ([`Moto::start`]) and the CloudFormation
//!   template deployed into it ([`deploy_stack`] → [`StackOutputs`]), with the local
//!   identities ([`Identities`]: profiles `flowpilot-admin`, `flowpilot-worker`,
//!   `flowpilot-operator`) whose policies the simulator enforces.
//! - [`queue`]: draining SQS queues into parsed JSON bodies ([`drain_queue`]).
//! - [`e2e`]: one isolated stack per test (moto + stack + in-process simulator) with worker
//!   and CLI processes, and readers for the ledger, runs, health events and metrics.
//! - [`chaos`]: fault plans and `kill -9` / restart of worker processes at random moments.
//! - [`fuzz`]: poison message bodies (random, truncated, nested, huge, wrongly typed).
//! - this module: paths, [`poll_until`], [`aws_env`] for spawned processes, [`profile_sdk_config`]
//!   for in-process clients holding a deployed identity, and [`sdk_config`] for observers that
//!   read moto directly (test instruments, not flowpilot).
//!
//! Everything listens on 127.0.0.1 only, every wait has a deadline, and every process a
//! helper starts is killed when its handle drops.

// The benchmark includes this harness too and uses only part of it.
#![allow(dead_code)]

pub mod chaos;
pub mod e2e;
pub mod fuzz;
pub mod moto;
pub mod policy;
pub mod queue;
pub mod template;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_config::SdkConfig;

pub use moto::{DeployOptions, Identities, Moto, StackOutputs, deploy_stack, deploy_with};
pub use queue::{drain_available, drain_queue};

/// Region of every local resource (moto and the simulator accept any; the stack uses this).
pub const REGION: &str = "us-east-1";
/// Dummy credentials of test observers that read moto directly (moto itself enforces nothing).
pub const ACCESS_KEY_ID: &str = "test";
pub const SECRET_ACCESS_KEY: &str = "test";
/// The profiles deploy.py writes (see its module doc): the account administrator, the
/// deployed worker task role, and a role with the stack's OperatorPolicy (the CLI's).
pub const ADMIN_PROFILE: &str = "flowpilot-admin";
pub const WORKER_PROFILE: &str = "flowpilot-worker";
pub const OPERATOR_PROFILE: &str = "flowpilot-operator";

/// The repository root (where Cargo.toml of the `flowpilot` package lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `infra/local`, home of the stack script, deploy.py and the virtualenv.
pub fn infra_local() -> PathBuf {
    repo_root().join("infra").join("local")
}

/// A program installed in the project virtualenv (`moto_server`, `python`, `cfn-lint`).
pub fn venv_bin(name: &str) -> PathBuf {
    infra_local().join(".venv").join("bin").join(name)
}

/// Scratch space for logs and state of this test build (`target/tmp`).
pub fn scratch_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// Environment for a spawned flowpilot process (worker, CLI) holding `profile`'s identity:
/// every AWS endpoint is the simulator (which enforces IAM and forwards SQS, DynamoDB and
/// EventBridge calls to moto), credentials come from the profile files deploy.py wrote, as
/// the AWS SDK's standard chain reads them. Add the `FLOWPILOT_*` resource variables with
/// [`StackOutputs::flowpilot_env`]. Callers must not also set `AWS_ACCESS_KEY_ID` (the
/// environment wins over the profile in the credentials chain).
pub fn aws_env(sim_url: &str, ids: &Identities, profile: &str) -> Vec<(String, String)> {
    let config = ids.config_file.to_string_lossy();
    let credentials = ids.credentials_file.to_string_lossy();
    [
        ("AWS_ENDPOINT_URL", sim_url),
        ("AWS_ENDPOINT_URL_APPFLOW", sim_url),
        ("AWS_ENDPOINT_URL_CUSTOMER_PROFILES", sim_url),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_CONFIG_FILE", &config),
        ("AWS_SHARED_CREDENTIALS_FILE", &credentials),
        ("AWS_PROFILE", profile),
        // Never wait for an instance metadata service that is not there.
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// SDK configuration holding `profile`'s identity from the deployed profile files, every
/// service at `endpoint_url` (the simulator): what a flowpilot process with `AWS_PROFILE`
/// gets, built in-process. Roles are assumed through STS by the SDK itself (`role_arn` +
/// `source_profile`), so trust policies are evaluated too.
pub async fn profile_sdk_config(endpoint_url: &str, ids: &Identities, profile: &str) -> SdkConfig {
    use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
    let files = EnvConfigFiles::builder()
        .with_file(EnvConfigFileKind::Config, &ids.config_file)
        .with_file(EnvConfigFileKind::Credentials, &ids.credentials_file)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint_url)
        .profile_files(files)
        .profile_name(profile)
        .http_client(flowpilot::aws::https_client())
        .load()
        .await
}

/// SDK configuration pointing every service at `endpoint_url` with dummy static credentials:
/// for test observers that read moto directly (queue depths, the health tap, the state table),
/// never for what flowpilot itself does.
pub async fn sdk_config(endpoint_url: &str) -> SdkConfig {
    flowpilot::aws::local_sdk_config(endpoint_url, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY).await
}

/// Calls `check` until it yields `Some(value)`, at most until `timeout` has passed.
/// An `Err` from `check` ends the wait at once (map tolerable errors to `Ok(None)`).
/// Between attempts it waits a short, fixed interval: this is polling with a deadline,
/// not a sleep standing in for synchronisation.
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    const INTERVAL: Duration = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await.context("poll_until: check failed")? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("poll_until: condition not met within {timeout:?}");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}
