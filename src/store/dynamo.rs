//! DynamoDB [`Store`]. Item layout (table partition key `pk`):
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `pk` | S | `wf#{workflow_id}` |
//! | `version` | N | the workflow's version; every save is conditional on it |
//! | `status` | S | workflow status (for humans browsing the table) |
//! | `active_shard` | S | `"0"` while the status is active, absent otherwise: the sparse GSI `active` |
//! | `doc` | S | the whole [`Workflow`] as JSON (spec, batches, outbox, …) |
//! | `updated_at` | S | RFC 3339 time of the write |
//!
//! A save replaces the whole item (PutItem), so leaving `active_shard` out removes the workflow
//! from the index in the same write.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use flowpilot_core::health::UnreadableItem;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::Workflow;

use super::{Listing, Store, StoreError};
use crate::aws::ErrorRef;

/// Name of the sparse GSI on active workflows (partition `active_shard`, sort `pk`).
pub const ACTIVE_INDEX: &str = "active";
/// The single shard value; a larger fleet could spread active workflows over more shards.
const ACTIVE_SHARD: &str = "0";
const KEY_PREFIX: &str = "wf#";
/// BatchGetItem reads at most 100 items per request.
const BATCH_GET_MAX: usize = 100;
/// Further BatchGetItem requests for keys DynamoDB left unprocessed (50 ms doubling: ~1.5 s).
const BATCH_GET_RETRIES: u32 = 5;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn item(wf: &Workflow) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let doc = serde_json::to_string(wf).map_err(|e| StoreError::Corrupt {
            key: key(&wf.id),
            reason: format!("cannot serialise: {e}"),
        })?;
        let mut item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(key(&wf.id))),
            (
                "version".to_owned(),
                AttributeValue::N(wf.version.to_string()),
            ),
            (
                "status".to_owned(),
                AttributeValue::S(wf.status.as_str().to_owned()),
            ),
            ("doc".to_owned(), AttributeValue::S(doc)),
            (
                "updated_at".to_owned(),
                AttributeValue::S(wf.updated_at.to_rfc3339()),
            ),
        ]);
        if wf.status.is_active() {
            item.insert(
                "active_shard".to_owned(),
                AttributeValue::S(ACTIVE_SHARD.to_owned()),
            );
        }
        Ok(item)
    }

    /// The size DynamoDB bills a write of `wf` by: attribute names plus values (strings by
    /// their UTF-8 length; numbers counted as their decimal text, which over-counts a little).
    /// A write costs one write unit per started KiB.
    pub fn item_bytes(wf: &Workflow) -> Result<usize, StoreError> {
        Ok(Self::item(wf)?
            .iter()
            .map(|(name, v)| {
                name.len()
                    + match v {
                        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                        _ => 0,
                    }
            })
            .sum())
    }

    /// Reads up to [`BATCH_GET_MAX`] items by key, asking again for what DynamoDB left
    /// unprocessed (it may, under throttling) with a growing pause, a bounded number of times.
    async fn get_many(&self, pks: &[AttributeValue], out: &mut Listing) -> Result<(), StoreError> {
        let mut pending: Vec<HashMap<String, AttributeValue>> = pks
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
            let page = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| Self::backend("BatchGetItem", e))?;
            if let Some(items) = page.responses.as_ref().and_then(|r| r.get(&self.table)) {
                read_page(items, out);
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
                    "{} active workflow(s) still unread after {} attempts (throttled)",
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

fn key(id: &WorkflowId) -> String {
    format!("{KEY_PREFIX}{id}")
}

fn parse_item(item: &HashMap<String, AttributeValue>) -> Result<Workflow, StoreError> {
    read_item(item).map_err(|u| StoreError::Corrupt {
        key: u.key,
        reason: u.reason,
    })
}

/// The workflow an item holds, or what can still be read of an item that holds none.
fn read_item(item: &HashMap<String, AttributeValue>) -> Result<Workflow, Box<UnreadableItem>> {
    let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    let version = item
        .get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok());
    let doc = s("doc");
    let parsed = match doc {
        None => Err("no `doc` attribute".to_owned()),
        Some(doc) => serde_json::from_str::<Workflow>(doc).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(mut wf) => {
            // The `version` attribute is what conditions check; it wins over the document's copy.
            if let Some(v) = version {
                wf.version = v;
            }
            Ok(wf)
        }
        Err(reason) => {
            let key = s("pk").cloned().unwrap_or_default();
            // A document of an incompatible version is usually still JSON with a spec: its
            // domain and connector tell the alert whom it concerns.
            let spec = doc
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .map(|v| v["spec"].clone())
                .unwrap_or_default();
            let spec_str = |name: &str| spec[name].as_str().unwrap_or_default().to_owned();
            Err(Box::new(UnreadableItem {
                workflow_id: key
                    .strip_prefix(KEY_PREFIX)
                    .filter(|id| !id.is_empty())
                    .unwrap_or(&key)
                    .to_owned(),
                key,
                reason,
                version,
                status: s("status").cloned().unwrap_or_default(),
                domain: spec_str("domain"),
                object_type: spec_str("object_type"),
                connector: spec_str("connector"),
            }))
        }
    }
}

/// Adds a page of items to `listing`, setting aside those that do not read back.
fn read_page<'a>(
    items: impl IntoIterator<Item = &'a HashMap<String, AttributeValue>>,
    listing: &mut Listing,
) {
    for item in items {
        match read_item(item) {
            Ok(wf) => listing.workflows.push(wf),
            Err(unreadable) => listing.unreadable.push(*unreadable),
        }
    }
}

impl Store for DynamoStore {
    async fn create(&self, wf: &Workflow) -> Result<(), StoreError> {
        let item = Self::item(wf)?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::AlreadyExists(wf.id.clone()))
            }
            Err(e) => Err(Self::backend("PutItem", e)),
        }
    }

    async fn load(&self, id: &WorkflowId) -> Result<Option<Workflow>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Self::backend("GetItem", e))?;
        out.item.as_ref().map(parse_item).transpose()
    }

    async fn save(&self, wf: &Workflow, expected_version: u64) -> Result<(), StoreError> {
        let item = Self::item(wf)?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk) AND version = :expected")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::Conflict {
                    id: wf.id.clone(),
                    expected: expected_version,
                })
            }
            Err(e) => Err(Self::backend("PutItem", e)),
        }
    }

    async fn list_active(&self) -> Result<Listing, StoreError> {
        // The index projects keys only (a save of an active workflow then writes the table
        // alone, not the index too): query the keys, then read the items by key.
        let mut keys = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
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
        let mut out = Listing::default();
        for chunk in keys.chunks(BATCH_GET_MAX) {
            self.get_many(chunk, &mut out).await?;
        }
        out.workflows.sort_by_key(|w| w.created_at);
        Ok(out)
    }

    async fn list_all(&self) -> Result<Listing, StoreError> {
        let mut out = Listing::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| Self::backend("Scan", e))?;
            let workflows = page.items().iter().filter(|item| {
                item.get("pk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|pk| pk.starts_with(KEY_PREFIX))
            });
            read_page(workflows, &mut out);
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

    #[test]
    fn a_listing_sets_unreadable_items_aside_with_what_they_still_say() {
        let good = DynamoStore::item(&workflow("good")).unwrap();
        // What a newer flowpilot might write: JSON with a spec, but not a workflow we can read.
        let mut newer = DynamoStore::item(&workflow("newer")).unwrap();
        let mut doc: serde_json::Value =
            serde_json::from_str(newer["doc"].as_s().unwrap()).unwrap();
        doc["status"] = "exploded".into();
        newer.insert("doc".into(), AttributeValue::S(doc.to_string()));
        newer.insert("version".into(), AttributeValue::N("7".into()));
        let mut garbage = DynamoStore::item(&workflow("garbage")).unwrap();
        garbage.insert("doc".into(), AttributeValue::S("{not json".into()));
        let mut docless = DynamoStore::item(&workflow("docless")).unwrap();
        docless.remove("doc");
        let also_good = DynamoStore::item(&workflow("also-good")).unwrap();

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
