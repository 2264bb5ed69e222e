//! Shared harness for the integration-test binaries (`mod support;` in each of them).
//!
//! - [`moto`]: a private moto server per test ([`Moto::start`]) and the CloudFormation
//!   template deployed into it ([`deploy_stack`] → [`StackOutputs`]).
//! - [`queue`]: draining SQS queues into parsed JSON bodies ([`drain_queue`]).
//! - [`e2e`]: one isolated stack per test (moto + stack + in-process simulator) with worker
//!   and CLI processes, and readers for the ledger, runs, health events and metrics.
//! - [`chaos`]: fault plans and `kill -9` / restart of worker processes at random moments.
//! - [`fuzz`]: poison message bodies (random, truncated, nested, huge, wrongly typed).
//! - this module: paths, [`poll_until`], [`aws_env`] for spawned processes,
//!   [`sdk_config`] / [`sdk_config_with`] for in-process SDK clients and
//!   [`admin_identities`] (an identity document for the simulator's IAM).
//!
//! Everything listens on 127.0.0.1 only, every wait has a deadline, and every process a
//! helper starts is killed when its handle drops.

// Each test binary uses a different subset of the harness.
#![allow(dead_code)]

pub mod chaos;
pub mod e2e;
pub mod fuzz;
pub mod moto;
pub mod queue;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_config::SdkConfig;

pub use moto::{Moto, StackOutputs, deploy_stack};
pub use queue::{drain_available, drain_queue};

/// Region of every local resource (moto and the simulator accept any; the stack uses this).
pub const REGION: &str = "us-east-1";
/// Dummy credentials: moto and the simulator check the SigV4 header's shape, not its secret.
pub const ACCESS_KEY_ID: &str = "test";
pub const SECRET_ACCESS_KEY: &str = "test";

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

/// Environment for a spawned flowpilot process (worker, CLI, simulator): SDK endpoints for
/// moto and the simulator, region and dummy credentials. Add the `FLOWPILOT_*` resource
/// variables with [`StackOutputs::flowpilot_env`].
pub fn aws_env(moto_url: &str, sim_url: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto_url),
        ("AWS_ENDPOINT_URL_APPFLOW", sim_url),
        ("AWS_ENDPOINT_URL_CUSTOMER_PROFILES", sim_url),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        // Never wait for an instance metadata service that is not there.
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// SDK configuration pointing every service at `endpoint_url` (moto, or the simulator for
/// AppFlow / Customer Profiles clients), with dummy static credentials, us-east-1 and the
/// rustls+ring HTTP client the project uses.
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
