//! flowpilot-sim: a local Amazon AppFlow + Amazon Connect Customer Profiles simulator that
//! speaks restJson1 to the real `aws-sdk-appflow` / `aws-sdk-customerprofiles` clients, runs
//! flows against deterministic synthetic sources, and keeps a ledger of every record written.
//!
//! Module map:
//! - [`config`]   — `SimConfig` (bind, seed, tick, source shape, events, faults, iam).
//! - `server`     — the axum router: both services on one port, caller and fault middleware.
//! - [`iam`]      — IAM: identities (`/_sim/iam`), policy evaluation (iam-rs), STS AssumeRole /
//!   GetCallerIdentity, and the enforcing front that forwards SQS / DynamoDB / EventBridge
//!   requests to moto (see its own module map).
//! - `appflow`    — AppFlow flow operations (camelCase, error member `message`).
//! - `appflow_profiles` — AppFlow connector profile operations (create, describe, update).
//! - `connector`  — the SaaS side of a connector profile: expiring credentials, API allowance.
//! - `access`     — what each AppFlow / Customer Profiles operation authorizes (IAM checks).
//! - `profiles`   — Customer Profiles operations (PascalCase, error member `Message`).
//! - `workflows`  — Customer Profiles' managed bulk import (CreateIntegrationWorkflow, ...),
//!   run in the background as the workflow's execution role.
//! - `flow`       — the parsed view of a flow definition: trigger, source, destination, filter.
//! - `runs`       — run lifecycle (timer, ledger writes, reports), cancellation, scheduler.
//! - `outcome`    — how a run ends (cancel, credentials, allowance, domain, scripted and
//!   record-level failures) and which records it writes.
//! - [`source`]   — deterministic synthetic records, counted in O(days).
//! - [`ledger`]   — per domain/object type write counts, distinct ids, duplicates.
//! - [`faults`]   — the fault plan: scripted run and record failures, expiring credentials,
//!   SaaS API allowances, throttling, 5xx, event loss/dupes.
//! - `events`     — AppFlow run reports published to EventBridge with `PutEvents`.
//! - `admin`      — `/_sim/` endpoints for tests (ledger, source, runs, flows, profiles,
//!   faults, iam, reset).
//! - `state`, `wire`, [`error`] — shared state, restJson1 helpers, typed errors.

pub mod config;
pub mod error;
pub mod faults;
pub mod iam;
pub mod ledger;
pub mod source;

mod access;
mod admin;
mod appflow;
mod appflow_profiles;
mod connector;
mod events;
mod flow;
mod outcome;
mod profiles;
mod runs;
mod server;
mod state;
mod wire;
mod workflows;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{EventsConfig, SimConfig, SourceConfig};
pub use error::SimError;
pub use faults::{
    ApiBudget, CredentialExpiry, DurationRange, FaultPlan, RecordFailure, RunFailure,
    failing_records,
};
pub use iam::IamConfig;
pub use iam::identity::{IdentityDocument, PolicyDoc, RoleDoc, ServiceDoc, UserDoc};

use state::Sim;

/// A running simulator. Dropping it without `shutdown()` leaves background tasks running
/// until the runtime ends.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    server: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, usable as both services' `endpoint_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting requests, stop every run timer and scheduler, and wait for them.
    pub async fn shutdown(self) {
        self.sim.shutdown.cancel();
        self.sim.tasks.close();
        self.sim.tasks.wait().await;
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "simulator server task ended abnormally");
        }
    }
}

/// Where the front forwards SQS / DynamoDB / EventBridge requests: `iam.upstream_url`, else
/// the EventBridge endpoint run reports go to (moto), else none (the front then answers 502).
/// Loopback only, and never the simulator itself (every request would loop).
fn upstream_url(config: &SimConfig, own: SocketAddr) -> Result<Option<String>, SimError> {
    let url = match &config.iam.upstream_url {
        Some(u) if !events::is_loopback_url(u) => {
            return Err(SimError::Config(format!(
                "iam.upstream_url {u} is not a loopback http(s) URL"
            )));
        }
        Some(u) => Some(u.clone()),
        None => events::resolve_endpoint(config).ok(),
    };
    if let Some(u) = &url
        && events::url_port(u) == Some(own.port())
    {
        return Err(SimError::Config(format!(
            "the front's upstream {u} is the simulator itself ({own}): set iam.upstream_url (or events.endpoint_url) to moto's URL"
        )));
    }
    Ok(url)
}

/// Start the simulator on a loopback address.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    if !config.bind.is_loopback() {
        return Err(SimError::NonLoopbackBind(config.bind));
    }
    config.faults.validate().map_err(SimError::Config)?;
    if config.source.records_per_day > 100_000 {
        return Err(SimError::Config(
            "source.records_per_day must be at most 100000".into(),
        ));
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (sink, publisher) = events::start_publisher(&config, shutdown.clone()).await?;
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;

    let upstream = upstream_url(&config, addr)?;
    let iam = iam::Iam::new(&config.iam, &config.region, &config.account_id, upstream)
        .map_err(SimError::Config)?;
    if !iam.enforce {
        tracing::warn!("IAM enforcement is OFF (--no-iam): every signed request is allowed");
    }
    let sim = Sim::new(config, sink, iam, shutdown);
    if let Some(p) = publisher {
        sim.tasks.spawn(p);
    }
    let app = server::router(Arc::clone(&sim));
    let stop = sim.shutdown.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "simulator server failed");
        }
    });
    tracing::info!(%addr, "flowpilot-sim listening");
    Ok(SimHandle { addr, sim, server })
}
