//! Workflow state persistence with optimistic concurrency (docs/architecture.md, "The outbox" and "The workflow model").
//!
//! - [`dynamo`]: the DynamoDB store used in production and end-to-end tests.
//! - [`memory`]: an in-memory store with identical semantics, for unit tests only.
//!
//! - [`layout`]: which batches live in chunk items beside the workflow's header (no I/O).
//!
//! `save` is conditional on the stored version equalling the version the caller loaded; a lost
//! race is [`StoreError::Conflict`], after which the caller reloads and decides again. The
//! pending effects (the outbox) are part of the header, so a transition and its effects are
//! committed in the same write (chunk items it needs are written first, unnamed until then).

pub mod dynamo;
pub mod layout;
pub mod memory;

use std::future::Future;

use flowpilot_core::health::UnreadableItem;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::Workflow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the workflow since it was loaded: reload and decide again.
    #[error("workflow {id} changed concurrently (expected version {expected})")]
    Conflict { id: WorkflowId, expected: u64 },
    #[error("workflow {0} already exists: pick another --id")]
    AlreadyExists(WorkflowId),
    /// The stored item cannot be read back (hand-edited, or written by an incompatible version).
    #[error("stored workflow {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("state store {operation} failed ({aws})")]
    Backend {
        operation: &'static str,
        aws: crate::aws::ErrorRef,
        #[source]
        source: aws_smithy_runtime_api::box_error::BoxError,
    },
    /// DynamoDB kept deferring part of a request (throttling); the caller tries again later.
    #[error("state store {operation} incomplete: {reason}")]
    Unavailable {
        operation: &'static str,
        reason: String,
    },
}

/// Persistence of workflows. Futures are `Send` so handlers can run on any worker thread.
pub trait Store: Send + Sync + 'static {
    /// Writes a new workflow; [`StoreError::AlreadyExists`] if the id is taken.
    fn create(&self, wf: &Workflow) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a workflow (strongly consistent), `None` if there is none with that id.
    fn load(
        &self,
        id: &WorkflowId,
    ) -> impl Future<Output = Result<Option<Workflow>, StoreError>> + Send;

    /// Replaces the workflow if its stored version is still `expected_version`.
    fn save(
        &self,
        wf: &Workflow,
        expected_version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every workflow whose status is active (the sparse index), for the reconciler and `list`.
    fn list_active(&self) -> impl Future<Output = Result<Listing, StoreError>> + Send;

    /// Every workflow, including failed and cancelled ones (`workflow list --all`).
    fn list_all(&self) -> impl Future<Output = Result<Listing, StoreError>> + Send;
}

/// What a listing found. An item that does not read back as a workflow is set aside in
/// `unreadable` rather than failing the listing: one bad item must not hide every other
/// workflow from the reconciler.
#[derive(Debug, Default)]
pub struct Listing {
    pub workflows: Vec<Workflow>,
    pub unreadable: Vec<UnreadableItem>,
}
