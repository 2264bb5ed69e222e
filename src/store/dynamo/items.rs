//! The items of the DynamoDB layout (README, "Storage layout"): building them, sizing them,
//! reading them back.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use flowpilot_core::health::UnreadableItem;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::{Batch, Workflow};

use super::{ACTIVE_SHARD, CHUNK_PREFIX, KEY_PREFIX};
use crate::store::StoreError;
use crate::store::layout::{ChunkRef, Plan};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn key(id: &WorkflowId) -> String {
    format!("{KEY_PREFIX}{id}")
}

pub(super) fn chunk_key(id: &WorkflowId, chunk: &str) -> String {
    format!("{CHUNK_PREFIX}{id}#{chunk}")
}

fn corrupt(wf: &WorkflowId, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        key: key(wf),
        reason: format!("cannot serialise: {e}"),
    }
}

/// The header of `wf` as `plan` lays it out. Without chunks it is exactly the single item
/// flowpilot always wrote (`doc` holds every batch).
pub(super) fn header(wf: &Workflow, plan: &Plan) -> Result<Item, StoreError> {
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
        ("doc".to_owned(), AttributeValue::S(plan.doc.clone())),
        (
            "updated_at".to_owned(),
            AttributeValue::S(wf.updated_at.to_rfc3339()),
        ),
    ]);
    if !plan.refs.is_empty() {
        let refs = serde_json::to_string(&plan.refs).map_err(|e| corrupt(&wf.id, e))?;
        item.insert("chunks".to_owned(), AttributeValue::S(refs));
    }
    if wf.status.is_active() {
        item.insert(
            "active_shard".to_owned(),
            AttributeValue::S(ACTIVE_SHARD.to_owned()),
        );
    }
    Ok(item)
}

/// A chunk item: a group of batches, named by the header that lists it.
pub(super) fn chunk(wf: &Workflow, r: &ChunkRef, json: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(chunk_key(&wf.id, &r.id))),
        (
            "version".to_owned(),
            AttributeValue::N(wf.version.to_string()),
        ),
        ("batches".to_owned(), AttributeValue::S(json.to_owned())),
    ])
}

/// The size DynamoDB bills a write of `item` by: attribute names plus values (strings by their
/// UTF-8 length; numbers counted as their decimal text, which over-counts a little). A write
/// costs one write unit per started KiB.
pub(super) fn bytes(item: &Item) -> usize {
    item.iter()
        .map(|(name, v)| {
            name.len()
                + match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    _ => 0,
                }
        })
        .sum()
}

/// A header read back: the workflow with its inline batches, and the chunks holding the rest.
#[derive(Debug)]
pub(super) struct Head {
    pub wf: Workflow,
    pub refs: Vec<ChunkRef>,
}

pub(super) fn parse_header(item: &Item) -> Result<Head, StoreError> {
    read_header(item).map_err(|u| StoreError::Corrupt {
        key: u.key,
        reason: u.reason,
    })
}

/// The chunk list of a header (none for a single-item workflow).
pub(super) fn refs(item: &Item) -> Result<Vec<ChunkRef>, String> {
    match item.get("chunks").and_then(|v| v.as_s().ok()) {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(json).map_err(|e| format!("unreadable `chunks`: {e}")),
    }
}

/// The batches of a chunk item, by its chunk id.
pub(super) fn parse_chunk(id: &WorkflowId, item: &Item) -> Result<(String, Vec<Batch>), String> {
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .ok_or("a chunk without `pk`")?;
    let chunk = pk
        .strip_prefix(&chunk_key(id, ""))
        .ok_or_else(|| format!("{pk} is not a chunk of {id}"))?;
    let json = item
        .get("batches")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| format!("chunk {pk} has no `batches`"))?;
    let batches = serde_json::from_str(json).map_err(|e| format!("chunk {pk}: {e}"))?;
    Ok((chunk.to_owned(), batches))
}

/// The header an item holds, or what can still be read of an item that holds none.
pub(super) fn read_header(item: &Item) -> Result<Head, Box<UnreadableItem>> {
    let doc = item.get("doc").and_then(|v| v.as_s().ok());
    let parsed = match doc {
        None => Err("no `doc` attribute".to_owned()),
        Some(doc) => serde_json::from_str::<Workflow>(doc).map_err(|e| e.to_string()),
    };
    match parsed.and_then(|wf| Ok((wf, refs(item)?))) {
        Ok((mut wf, refs)) => {
            // The `version` attribute is what conditions check; it wins over the document's copy.
            if let Some(v) = version(item) {
                wf.version = v;
            }
            Ok(Head { wf, refs })
        }
        Err(reason) => Err(Box::new(unreadable(item, reason))),
    }
}

fn version(item: &Item) -> Option<u64> {
    item.get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// What an alert can still say about a header that does not read back as a workflow.
pub(super) fn unreadable(item: &Item, reason: String) -> UnreadableItem {
    let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    let key = s("pk").cloned().unwrap_or_default();
    // A document of an incompatible version is usually still JSON with a spec: its domain and
    // connector tell the alert whom it concerns.
    let spec = s("doc")
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .map(|v| v["spec"].clone())
        .unwrap_or_default();
    let spec_str = |name: &str| spec[name].as_str().unwrap_or_default().to_owned();
    UnreadableItem {
        workflow_id: key
            .strip_prefix(KEY_PREFIX)
            .filter(|id| !id.is_empty())
            .unwrap_or(&key)
            .to_owned(),
        key,
        reason,
        version: version(item),
        status: s("status").cloned().unwrap_or_default(),
        domain: spec_str("domain"),
        object_type: spec_str("object_type"),
        connector: spec_str("connector"),
    }
}
