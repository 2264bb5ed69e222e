//! flowpilot: resumable, observable AppFlow historical ingestion into Amazon Connect Customer
//! Profiles.
//!
//! - [`core`] (crate `flowpilot-core`): the pure decision code — spec, planner, event model,
//!   state machine, health events. No I/O.
//! - [`cli`]: the command line (`workflow plan|create|status|list|cancel|redrive`, `worker`,
//!   `sim`, `demo`, `integration rebuild`).
//! - [`sim_cli`]: `flowpilot sim`, the local AppFlow + Customer Profiles simulator (crate
//!   `flowpilot-sim`).

pub use flowpilot_core as core;

pub mod cli;
pub mod sim_cli;
