//! DynamoDB [`Store`]. Item layout (table partition key `pk`; README, "Storage layout"):
//!
//! The header `wf#{workflow_id}`:
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `pk` | S | `wf#{workflow_id}` |
//! | `version` | N | the workflow's version; every save is conditional on it |
//! | `status` | S | workflow status (for humans browsing the table) |
//! | `active_shard` | S | `"0"` while the status is active, absent otherwise: the sparse GSI `active` |
//! | `doc` | S | the [`Workflow`] as JSON (spec, outbox, …) with its inline batches |
//! | `chunks` | S | JSON list of the chunk items holding the other batches; absent: `doc` has all |
//! | `updated_at` | S | RFC 3339 time of the write |
//!
//! A chunk `wfchunk#{workflow_id}#{chunk_id}`: `pk`, `version` (of the save that wrote it) and
//! `batches` (a JSON array of [`layout::CHUNK_BATCHES`] batches). Chunk items are written once,
//! under a fresh id, *before* the header that names them; the header's conditional PutItem is
//! the commit point, and chunks it no longer names are deleted after it. A workflow whose
//! batches all fit inline (every workflow under 200 batches, and an item written before the
//! layout existed) is the one header item, as before.
//!
//! A save replaces the whole header (PutItem), so leaving `active_shard` out removes the
//! workflow from the index in the same write.

mod items;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::Workflow;

use super::layout::{self, AssembleError, ChunkRef};
use super::{Listing, Store, StoreError};
use crate::aws::ErrorRef;
use items::Item;

/// Name of the sparse GSI on active workflows (partition `active_shard`, sort `pk`).
pub const ACTIVE_INDEX: &str = "active";
/// The single shard value; a larger fleet could spread active workflows over more shards.
const ACTIVE_SHARD: &str = "0";
const KEY_PREFIX: &str = "wf#";
/// Chunk items: a prefix that is not `wf#`, so listings never take one for a workflow.
const CHUNK_PREFIX: &str = "wfchunk#";
/// BatchGetItem reads at most 100 items per request.
const BATCH_GET_MAX: usize = 100;
/// Further BatchGetItem requests for keys DynamoDB left unprocessed (50 ms doubling: ~1.5 s).
const BATCH_GET_RETRIES: u32 = 5;
/// Reads of a header whose chunks a concurrent save replaced in between (each retry reads
/// the newer header, whose chunks exist until a later save).
const LOAD_ATTEMPTS: u32 = 5;
/// Remembered chunk lists; past this many workflows the memory starts over (a miss costs one
/// GetItem of the header's `version` and `chunks`).
const LAYOUTS_MAX: usize = 10_000;

/// What one save writes to DynamoDB (for the benchmark's cost table).
#[derive(Debug, Default)]
pub struct WriteCost {
    /// The header's billed size (one conditional PutItem).
    pub header_bytes: usize,
    /// Each chunk item put before the header.
    pub chunk_bytes: Vec<usize>,
    /// Chunk items deleted after the header (billed by the size of the deleted item).
    pub deleted: usize,
}

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// The chunk list of the version this process last read or wrote, per workflow: a save
    /// needs what the version it replaces stored, and the caller always loaded or saved it.
    layouts: Arc<Mutex<Layouts>>,
}

/// Per workflow: a version and the chunk list stored with it.
type Layouts = HashMap<WorkflowId, (u64, Vec<ChunkRef>)>;

fn new_chunk_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            layouts: Arc::default(),
        }
    }

    /// What saving `wf` over a version whose chunk list is `stored` writes; the new chunk list
    /// comes back for the next call.
    pub fn write_cost(
        wf: &Workflow,
        stored: &[ChunkRef],
    ) -> Result<(WriteCost, Vec<ChunkRef>), StoreError> {
        let plan = Self::plan(wf, stored)?;
        let cost = WriteCost {
            header_bytes: items::bytes(&items::header(wf, &plan)?),
            chunk_bytes: plan
                .writes
                .iter()
                .map(|(r, json)| items::bytes(&items::chunk(wf, r, json)))
                .collect(),
            deleted: plan.stale.len(),
        };
        Ok((cost, plan.refs))
    }

    fn plan(wf: &Workflow, stored: &[ChunkRef]) -> Result<layout::Plan, StoreError> {
        layout::plan(wf, stored, new_chunk_id).map_err(|e| StoreError::Corrupt {
            key: items::key(&wf.id),
            reason: format!("cannot serialise: {e}"),
        })
    }

    fn remember(&self, id: &WorkflowId, version: u64, refs: Vec<ChunkRef>) {
        let mut layouts = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        if layouts.len() >= LAYOUTS_MAX && !layouts.contains_key(id) {
            layouts.clear();
        }
        layouts.insert(id.clone(), (version, refs));
    }

    /// The chunk list stored with version `expected` of `id`: remembered, or read (`Conflict`
    /// if the stored version is another, as the conditional write would find).
    async fn stored_refs(
        &self,
        id: &WorkflowId,
        expected: u64,
    ) -> Result<Vec<ChunkRef>, StoreError> {
        let known = {
            let layouts = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
            layouts
                .get(id)
                .filter(|(v, _)| *v == expected)
                .map(|(_, refs)| refs.clone())
        };
        if let Some(refs) = known {
            return Ok(refs);
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(items::key(id)))
            .projection_expression("#v, #c")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#c", "chunks")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Self::backend("GetItem", e))?;
        let conflict = StoreError::Conflict {
            id: id.clone(),
            expected,
        };
        let Some(item) = out.item else {
            return Err(conflict);
        };
        let version = item.get("version").and_then(|v| v.as_n().ok());
        if version != Some(&expected.to_string()) {
            return Err(conflict);
        }
        items::refs(&item).map_err(|reason| StoreError::Corrupt {
            key: items::key(id),
            reason,
        })
    }

    /// Puts the new chunk items (before the header that names them: until it commits, nothing
    /// reads them).
    async fn put_chunks(&self, wf: &Workflow, plan: &layout::Plan) -> Result<(), StoreError> {
        for (r, json) in &plan.writes {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(items::chunk(wf, r, json)))
                .send()
                .await
                .map_err(|e| Self::backend("PutItem", e))?;
        }
        Ok(())
    }

    /// Deletes chunk items no header names any more. Best effort: one left behind is never
    /// read, only stored.
    async fn delete_chunks(&self, id: &WorkflowId, refs: &[ChunkRef]) {
        for r in refs {
            let key = items::chunk_key(id, &r.id);
            if let Err(e) = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(key.clone()))
                .send()
                .await
            {
                tracing::warn!(chunk = %key, error = %crate::aws::error_chain(&Self::backend("DeleteItem", e)), "an unused chunk item stays behind");
            }
        }
    }

    /// Writes the chunks, then the header under `condition`; `Ok(false)`: the condition failed
    /// (the new chunks are removed again).
    async fn write(
        &self,
        wf: &Workflow,
        stored: &[ChunkRef],
        condition: &str,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let plan = Self::plan(wf, stored)?;
        let header = items::header(wf, &plan)?;
        self.put_chunks(wf, &plan).await?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(header))
            .condition_expression(condition);
        if let Some(expected) = expected {
            put = put
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()));
        }
        match put.send().await {
            Ok(_) => {
                self.delete_chunks(&wf.id, &plan.stale).await;
                self.remember(&wf.id, wf.version, plan.refs);
                Ok(true)
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let written: Vec<ChunkRef> = plan.writes.into_iter().map(|(r, _)| r).collect();
                self.delete_chunks(&wf.id, &written).await;
                Ok(false)
            }
            // The header may have been written all the same: its chunks stay.
            Err(e) => Err(Self::backend("PutItem", e)),
        }
    }

    /// The full workflow behind a header item: its chunks read (strongly consistent) and put
    /// back in place. `None`: a concurrent save replaced a chunk; read the header again.
    async fn assemble(&self, head: items::Head) -> Result<Option<Workflow>, StoreError> {
        let id = head.wf.id.clone();
        let corrupt = |reason: String| StoreError::Corrupt {
            key: items::key(&id),
            reason,
        };
        if head.refs.is_empty() {
            self.remember(&id, head.wf.version, Vec::new());
            return Ok(Some(head.wf));
        }
        let keys: Vec<AttributeValue> = head
            .refs
            .iter()
            .map(|r| AttributeValue::S(items::chunk_key(&id, &r.id)))
            .collect();
        let mut chunks = HashMap::new();
        for item in self.get_items(&keys).await? {
            let (chunk, batches) = items::parse_chunk(&id, &item).map_err(corrupt)?;
            chunks.insert(chunk, batches);
        }
        let (version, refs) = (head.wf.version, head.refs.clone());
        match layout::assemble(head.wf, &head.refs, chunks) {
            Ok(wf) => {
                self.remember(&id, version, refs);
                Ok(Some(wf))
            }
            Err(AssembleError::Missing(_)) => Ok(None),
            Err(AssembleError::Corrupt(reason)) => Err(corrupt(reason)),
        }
    }

    /// Adds header items to a listing: a single-item workflow as it is, a chunked one read
    /// again by key (so its header and chunks are of one version); unreadable ones set aside.
    async fn add_to_listing<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a Item>,
        out: &mut Listing,
    ) -> Result<(), StoreError> {
        for item in headers {
            match items::read_header(item) {
                Ok(head) if head.refs.is_empty() => out.workflows.push(head.wf),
                Ok(head) => match self.load(&head.wf.id).await {
                    Ok(Some(wf)) => out.workflows.push(wf),
                    Ok(None) => {}
                    Err(StoreError::Corrupt { reason, .. }) => {
                        out.unreadable.push(items::unreadable(item, reason));
                    }
                    Err(e) => return Err(e),
                },
                Err(unreadable) => out.unreadable.push(*unreadable),
            }
        }
        Ok(())
    }

    /// Reads items by key, [`BATCH_GET_MAX`] per request (strongly consistent); keys not found
    /// are simply absent from the answer.
    async fn get_items(&self, keys: &[AttributeValue]) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            self.get_many(chunk, &mut out).await?;
        }
        Ok(out)
    }

    /// Reads up to [`BATCH_GET_MAX`] items by key, asking again for what DynamoDB left
    /// unprocessed (it may, under throttling) with a growing pause, a bounded number of times.
    async fn get_many(
        &self,
        pks: &[AttributeValue],
        out: &mut Vec<Item>,
    ) -> Result<(), StoreError> {
        let mut pending: Vec<Item> = pks
            .iter()
            .map(|pk| HashMap::from([("pk".to_owned(), pk.clone())]))
            .collect();
        let mut pause = Duration::from_millis(50);
        for attempt in 0..=BATCH_GET_RETRIES {
            if pending.is_empty() {
                return Ok(());
            }
            if attempt > 0 {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Corrupt {
                    key: self.table.clone(),
                    reason: format!("cannot build BatchGetItem request: {e}"),
                })?;
            let mut page = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| Self::backend("BatchGetItem", e))?;
            if let Some(items) = page.responses.as_mut().and_then(|r| r.remove(&self.table)) {
                out.extend(items);
            }
            pending = page
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Unavailable {
                operation: "BatchGetItem",
                reason: format!(
                    "{} item(s) still unread after {} attempts (throttled)",
                    pending.len(),
                    BATCH_GET_RETRIES + 1
                ),
            })
        }
    }

    fn backend<E>(
        operation: &'static str,
        err: SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        StoreError::Backend {
            operation,
            aws: ErrorRef::of(&err),
            source: err.into(),
        }
    }
}

impl Store for DynamoStore {
    async fn create(&self, wf: &Workflow) -> Result<(), StoreError> {
        if self
            .write(wf, &[], "attribute_not_exists(pk)", None)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(wf.id.clone()))
        }
    }

    async fn load(&self, id: &WorkflowId) -> Result<Option<Workflow>, StoreError> {
        for _ in 0..LOAD_ATTEMPTS {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(items::key(id)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| Self::backend("GetItem", e))?;
            let Some(item) = out.item else {
                return Ok(None);
            };
            if let Some(wf) = self.assemble(items::parse_header(&item)?).await? {
                return Ok(Some(wf));
            }
        }
        Err(StoreError::Unavailable {
            operation: "GetItem",
            reason: format!(
                "workflow {id} changed under every one of {LOAD_ATTEMPTS} reads of its chunks"
            ),
        })
    }

    async fn save(&self, wf: &Workflow, expected_version: u64) -> Result<(), StoreError> {
        let stored = self.stored_refs(&wf.id, expected_version).await?;
        if self
            .write(
                wf,
                &stored,
                "attribute_exists(pk) AND version = :expected",
                Some(expected_version),
            )
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                id: wf.id.clone(),
                expected: expected_version,
            })
        }
    }

    async fn list_active(&self) -> Result<Listing, StoreError> {
        // The index projects keys only (a save of an active workflow then writes the table
        // alone, not the index too): query the keys, then read the items by key.
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVE_INDEX)
                .key_condition_expression("active_shard = :shard")
                .expression_attribute_values(":shard", AttributeValue::S(ACTIVE_SHARD.to_owned()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| Self::backend("Query", e))?;
            keys.extend(
                page.items()
                    .iter()
                    .filter_map(|item| item.get("pk").cloned()),
            );
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let headers = self.get_items(&keys).await?;
        let mut out = Listing::default();
        self.add_to_listing(&headers, &mut out).await?;
        out.workflows.sort_by_key(|w| w.created_at);
        Ok(out)
    }

    async fn list_all(&self) -> Result<Listing, StoreError> {
        let mut out = Listing::default();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| Self::backend("Scan", e))?;
            let headers: Vec<&Item> = page
                .items()
                .iter()
                .filter(|item| {
                    item.get("pk")
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|pk| pk.starts_with(KEY_PREFIX))
                })
                .collect();
            self.add_to_listing(headers, &mut out).await?;
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => {
                    out.workflows.sort_by_key(|w| w.created_at);
                    return Ok(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::query::QueryError;
    use aws_sdk_dynamodb::types::error::ResourceNotFoundException;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::aws::error_chain;

    /// A service error as the SDK builds it from DynamoDB's answer (status, request id header).
    fn service_error(status: u16, error: QueryError) -> SdkError<QueryError, Response> {
        let mut raw = Response::new(
            StatusCode::try_from(status).expect("a valid status"),
            SdkBody::from("{}"),
        );
        raw.headers_mut()
            .insert("x-amzn-requestid", "R3QU35T1D0000000000000000000000000");
        SdkError::service_error(error, raw)
    }

    #[test]
    fn a_backend_error_names_the_aws_code_and_request_id_and_keeps_the_sdk_error() {
        // A modelled error (as the SDK's deserialiser builds it): its own Display has the code
        // but never the request id.
        let missing = QueryError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Requested resource not found")
                .meta(
                    ErrorMetadata::builder()
                        .code("ResourceNotFoundException")
                        .message("Requested resource not found")
                        .build(),
                )
                .build(),
        );
        let err = DynamoStore::backend("Query", service_error(400, missing));
        let text = err.to_string();
        assert!(text.contains("ResourceNotFoundException"), "{text}");
        assert!(
            text.contains("R3QU35T1D0000000000000000000000000"),
            "{text}"
        );
        assert!(
            error_chain(&err).contains("Requested resource not found"),
            "the chain keeps the service's message: {}",
            error_chain(&err)
        );
        let source = std::error::Error::source(&err).expect("the SDK error is the source");
        let sdk = source
            .downcast_ref::<SdkError<QueryError, Response>>()
            .expect("the source is the SDK error itself");
        assert_eq!(sdk.code(), Some("ResourceNotFoundException"));

        // An error code the SDK does not model (what IAM denials are).
        let denied = QueryError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: dynamodb:Query")
                .build(),
        );
        let err = DynamoStore::backend("Query", service_error(400, denied));
        let text = err.to_string();
        assert!(text.contains("AccessDeniedException"), "{text}");
        assert!(
            text.contains("R3QU35T1D0000000000000000000000000"),
            "{text}"
        );
        assert!(
            error_chain(&err).contains("dynamodb:Query"),
            "{}",
            error_chain(&err)
        );
    }

    fn workflow(id: &str) -> Workflow {
        let now = chrono::Utc::now();
        let spec = flowpilot_core::spec::SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            from: Some("2024-01-01".into()),
            to: Some("2025-01-01".into()),
            kms_arn: Some("arn:aws:kms:us-east-1:123456789012:key/k".into()),
            ..Default::default()
        }
        .validate(now)
        .unwrap();
        Workflow::new(WorkflowId::new(id).unwrap(), spec, now)
    }

    fn item(wf: &Workflow) -> Result<Item, StoreError> {
        items::header(wf, &DynamoStore::plan(wf, &[])?)
    }

    fn read_page(headers: &[Item], out: &mut Listing) {
        for item in headers {
            match items::read_header(item) {
                Ok(head) => out.workflows.push(head.wf),
                Err(unreadable) => out.unreadable.push(*unreadable),
            }
        }
    }

    #[test]
    fn a_listing_sets_unreadable_items_aside_with_what_they_still_say() {
        let good = item(&workflow("good")).unwrap();
        // What a newer flowpilot might write: JSON with a spec, but not a workflow we can read.
        let mut newer = item(&workflow("newer")).unwrap();
        let mut doc: serde_json::Value =
            serde_json::from_str(newer["doc"].as_s().unwrap()).unwrap();
        doc["status"] = "exploded".into();
        newer.insert("doc".into(), AttributeValue::S(doc.to_string()));
        newer.insert("version".into(), AttributeValue::N("7".into()));
        let mut garbage = item(&workflow("garbage")).unwrap();
        garbage.insert("doc".into(), AttributeValue::S("{not json".into()));
        let mut docless = item(&workflow("docless")).unwrap();
        docless.remove("doc");
        let also_good = item(&workflow("also-good")).unwrap();

        let mut listing = Listing::default();
        read_page(&[good, newer, garbage, docless, also_good], &mut listing);

        let ids: Vec<&str> = listing.workflows.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["good", "also-good"]);
        let unreadable: Vec<(&str, &str)> = listing
            .unreadable
            .iter()
            .map(|u| (u.key.as_str(), u.workflow_id.as_str()))
            .collect();
        assert_eq!(
            unreadable,
            [
                ("wf#newer", "newer"),
                ("wf#garbage", "garbage"),
                ("wf#docless", "docless")
            ]
        );
        let newer = &listing.unreadable[0];
        assert!(newer.reason.contains("exploded"), "{}", newer.reason);
        assert_eq!(newer.version, Some(7));
        assert_eq!(
            (
                newer.status.as_str(),
                newer.domain.as_str(),
                newer.object_type.as_str(),
                newer.connector.as_str()
            ),
            ("pending", "acme", "Account", "salesforce")
        );
        let garbage = &listing.unreadable[1];
        assert_eq!(
            (garbage.domain.as_str(), garbage.connector.as_str()),
            ("", "")
        );
        assert_eq!(listing.unreadable[2].reason, "no `doc` attribute");
    }
}
