//! flowpilot: resumable, observable AppFlow historical ingestion into Amazon Connect Customer
//! Profiles.
//!
//! - [`core`] (crate `flowpilot-core`): the pure decision code — spec, planner, event model,
//!   state machine, health events. No I/O.
//! - [`cli`]: the command line (`workflow plan|create|status|list|cancel|redrive`, `worker`,
//!   `integration rebuild`; with the default `local` feature also `sim` and `demo`).
//! - `sim_cli` (feature `local`): `flowpilot sim`, the local AppFlow + Customer Profiles
//!   simulator (crate `flowpilot-sim`).
//! - `demo` (feature `local`): `flowpilot demo`, the whole product on the local stack.
//! - [`config`]: worker/CLI settings layered flags > `FLOWPILOT_*` environment > TOML file.
//! - [`aws`]: SDK configuration and the adapters (AppFlow, Customer Profiles, EventBridge
//!   health publisher, SQS work queue); SDK errors mapped to transient/permanent.
//! - [`store`]: workflow persistence with optimistic concurrency (DynamoDB; in-memory for
//!   unit tests).
//! - [`worker`]: the imperative shell — pollers, per-workflow handling (outbox drain, decide,
//!   conditional commit, effects), visibility extension, graceful shutdown, `/metrics`.
//! - [`lambda`]: `flowpilot lambda`, the same handling as an AWS Lambda function behind an SQS
//!   event source mapping, answering with partial batch responses.
//! - [`metrics`]: counters, the handling-latency histogram and the SDK request counter.

pub use flowpilot_core as core;

pub mod aws;
pub mod budget;
pub mod cli;
pub mod config;
#[cfg(feature = "local")]
pub mod demo;
pub mod lambda;
pub mod metrics;
#[cfg(feature = "local")]
pub mod sim_cli;
pub mod store;
pub mod worker;
