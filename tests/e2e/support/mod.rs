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
//! - [`managed`]: CreateIntegrationWorkflow requests (flow definition, batches).
//! - [`lambda`]: a local Lambda Runtime API, `flowpilot lambda` processes, and the test
//!   playing the SQS event source mapping.
//! - this module: paths, [`poll_until`], [`aws_env`] for spawned processes, [`profile_sdk_config`]
//!   for in-process clients holding a deployed identity, [`sdk_config`] for observers that
//!   read moto directly (test instruments, not flowpilot), [`sdk_config_with`] for clients with
//!   given keys and [`admin_identities`] (an identity document for simulator-only tests).
//!
//! Everything listens on 127.0.0.1 only, every wait has a deadline, and every process a
//! helper starts is killed when its handle drops.

// The benchmark includes this harness too and uses only part of it.
#![allow(dead_code)]

pub mod chaos;
pub mod e2e;
pub mod fuzz;
pub mod lambda;
pub mod managed;
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
/// service at `endpoint_url` (the simulator): what a flowpilot process with `AWS_PROFILE` gets,
/// built in-process. A profile with `role_arn` is assumed through STS at `endpoint_url` with
/// its `source_profile`'s keys (the SDK's own profile chain would call STS at the endpoint of
/// the process environment, which an in-process test cannot set per stack), so trust policies
/// are evaluated as for the worker processes.
pub async fn profile_sdk_config(endpoint_url: &str, ids: &Identities, profile: &str) -> SdkConfig {
    match profile_credentials(endpoint_url, ids, profile).await {
        Ok(creds) => sdk_config_with(endpoint_url, creds).await,
        // Keys nobody knows: every call then fails with the simulator's own answer, which
        // names the problem better than a panic here would.
        Err(e) => {
            eprintln!("profile {profile}: {e:#}");
            sdk_config_with(
                endpoint_url,
                static_credentials("AKIAUNRESOLVEDPROFILE", "x"),
            )
            .await
        }
    }
}

async fn profile_credentials(
    endpoint_url: &str,
    ids: &Identities,
    profile: &str,
) -> anyhow::Result<aws_sdk_sqs::config::SharedCredentialsProvider> {
    let config = ini(&std::fs::read_to_string(&ids.config_file)?);
    let credentials = ini(&std::fs::read_to_string(&ids.credentials_file)?);
    let keys = |name: &str| -> anyhow::Result<aws_sdk_sqs::config::SharedCredentialsProvider> {
        let section = credentials
            .get(name)
            .with_context(|| format!("no [{name}] in {}", ids.credentials_file.display()))?;
        let get = |k: &str| {
            section
                .get(k)
                .cloned()
                .with_context(|| format!("[{name}] has no {k}"))
        };
        Ok(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            static_credentials(&get("aws_access_key_id")?, &get("aws_secret_access_key")?),
        ))
    };
    let section = config
        .get(&format!("profile {profile}"))
        .with_context(|| format!("no profile {profile} in {}", ids.config_file.display()))?;
    let Some(role_arn) = section.get("role_arn") else {
        return keys(profile);
    };
    let source = section
        .get("source_profile")
        .context("role_arn without source_profile")?;
    let sts_conf = sdk_config_with(endpoint_url, keys(source)?).await;
    let out = aws_sdk_sts::Client::new(&sts_conf)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(
            section
                .get("role_session_name")
                .map_or(profile, String::as_str),
        )
        .send()
        .await
        .with_context(|| format!("AssumeRole {role_arn} for profile {profile}"))?;
    let c = out
        .credentials()
        .context("AssumeRole answered no credentials")?;
    Ok(aws_sdk_sqs::config::SharedCredentialsProvider::new(
        aws_sdk_sqs::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "flowpilot-tests-assumed-role",
        ),
    ))
}

/// `[section]` → key → value, for the two small files deploy.py writes.
fn ini(text: &str) -> std::collections::HashMap<String, std::collections::HashMap<String, String>> {
    let mut out: std::collections::HashMap<String, std::collections::HashMap<String, String>> =
        Default::default();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
        } else if let Some((k, v)) = line.split_once('=')
            && !line.starts_with('#')
        {
            out.entry(current.clone())
                .or_default()
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

/// SDK configuration pointing every service at `endpoint_url` with dummy static credentials:
/// for test observers that read moto directly (queue depths, the health tap, the state table),
/// never for what flowpilot itself does.
pub async fn sdk_config(endpoint_url: &str) -> SdkConfig {
    flowpilot::aws::local_sdk_config(endpoint_url, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY).await
}

/// SDK configuration like [`sdk_config`], but signing with `credentials` (an identity
/// document's user, or an `AssumeRoleProvider` for STS sessions).
pub async fn sdk_config_with(
    endpoint_url: &str,
    credentials: impl aws_sdk_sqs::config::ProvideCredentials + 'static,
) -> SdkConfig {
    sdk_config(endpoint_url)
        .await
        .into_builder()
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            credentials,
        ))
        .build()
}

/// Static credentials (as an identity document's user has).
pub fn static_credentials(access_key_id: &str, secret: &str) -> aws_sdk_sqs::config::Credentials {
    aws_sdk_sqs::config::Credentials::new(access_key_id, secret, None, None, "flowpilot-tests")
}

/// The simulator's account (its default `account_id`).
pub const ACCOUNT_ID: &str = "123456789012";

/// An identity document for the simulator with one administrator (`Allow * on *`), user
/// `flowpilot-admin`, signing with `access_key_id` and [`SECRET_ACCESS_KEY`].
pub fn admin_identities(access_key_id: &str) -> flowpilot_sim::IdentityDocument {
    let doc = serde_json::json!({
        "account_id": ACCOUNT_ID,
        "users": [{
            "arn": format!("arn:aws:iam::{ACCOUNT_ID}:user/flowpilot-admin"),
            "access_key_id": access_key_id,
            "secret_access_key": SECRET_ACCESS_KEY,
            "policies": [{ "name": "admin", "document": {
                "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }] } }]
        }]
    });
    // A fixed literal that deserializes by construction; a failure is a bug in this file.
    serde_json::from_value(doc).expect("the admin identity document is well-formed")
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
