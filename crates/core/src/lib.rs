//! flowpilot's pure core: everything the worker decides, with no I/O.
//!
//! - [`ids`]: validated workflow ids, deterministic flow names and client tokens.
//! - [`spec`]: the operator's workflow spec and its validation.
//! - [`duration`]: ISO-8601 durations (`P2M`, `P14D`, `PT12H`) with calendar-correct addition.
//! - [`plan`]: splitting `[from, to)` into batch windows; per-window AppFlow filters.
//! - [`event`]: parsing SQS bodies (AppFlow EventBridge envelopes, command events) or poison.
//! - [`command`]: the commands workflows accept and their one wire form.
//! - [`classify`]: the error table: transient, permanent, reconnect or source budget.
//! - [`backoff`]: retry delays (exponential, full jitter derived deterministically).
//! - [`model`]: the persisted workflow state.
//! - [`input`], [`effect`]: what goes into and comes out of the state machine.
//! - [`decide`]: the state machine itself.
//! - [`health`]: health events published for alerting.
//! - [`advice`]: the recommended next step (plain words and a command) for every problem.

pub mod advice;
pub mod backoff;
pub mod classify;
pub mod command;
pub mod decide;
pub mod duration;
pub mod effect;
pub mod event;
pub mod health;
pub mod ids;
pub mod input;
pub mod model;
pub mod plan;
pub mod spec;
