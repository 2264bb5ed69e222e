//! How a workflow is split over DynamoDB items, without I/O (README, "Storage layout").
//!
//! The batches are cut into groups of [`CHUNK_BATCHES`] by position. A full group that nothing
//! is about to change is *cold*: it lives in a chunk item of its own, and the header lists it
//! (a [`ChunkRef`]). Every other batch is *inline*, in the header's document. Cold groups are
//! those wholly behind the frontier (the first batch not done: they are finished) and those at
//! least a group ahead of it that have not started. So the header holds about one or two groups
//! whatever the workflow's length, and a transition changes a chunk only when the frontier
//! crosses a group boundary (once per [`CHUNK_BATCHES`] batches).
//!
//! Chunk items are immutable: a changed group is written under a fresh key before the header
//! that names it, so the header's conditional write stays the one commit point, and a reader
//! never sees half of a transition.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use flowpilot_core::model::{Batch, BatchStatus, Workflow};
use serde::{Deserialize, Serialize};

/// Batches per chunk item. The header holds one to two groups, so this sets its size (a
/// finished batch is ~310 bytes of JSON: ~16 KB a group) against how often a transition also
/// writes a chunk (once per group). A chunk stays far below the 400 KB item limit even with
/// long error messages.
pub const CHUNK_BATCHES: usize = 50;

/// One cold group as the header names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Position of the group's first batch in `Workflow::batches`.
    #[serde(rename = "s")]
    pub start: u32,
    #[serde(rename = "n")]
    pub count: u32,
    /// The chunk item's key suffix (fresh for every write, so items are never overwritten).
    pub id: String,
    /// Digest of the group's JSON: an unchanged group keeps its item.
    #[serde(rename = "d")]
    pub digest: String,
}

/// What one save writes: the header's document (the workflow with its inline batches), the
/// header's chunk list, the chunk items to put first, and those the new header no longer names.
#[derive(Debug)]
pub struct Plan {
    pub doc: String,
    pub refs: Vec<ChunkRef>,
    pub writes: Vec<(ChunkRef, String)>,
    pub stale: Vec<ChunkRef>,
}

/// A batch that stays as it is until the frontier reaches it, or for good.
fn settled(b: &Batch) -> bool {
    b.status.is_done()
        || (b.status == BatchStatus::Pending
            && b.attempt == 0
            && b.started_at.is_none()
            && b.execution_id.is_none()
            && !b.flow_ready)
}

/// Start positions of the cold groups of `batches`.
pub fn cold_groups(batches: &[Batch]) -> Vec<usize> {
    let frontier = batches
        .iter()
        .position(|b| !b.status.is_done())
        .unwrap_or(batches.len());
    (0..batches.len() / CHUNK_BATCHES)
        .map(|g| g * CHUNK_BATCHES)
        .filter(|&start| {
            let end = start + CHUNK_BATCHES;
            end <= frontier
                || (start >= frontier + CHUNK_BATCHES && batches[start..end].iter().all(settled))
        })
        .collect()
}

fn digest(json: &str) -> String {
    // Not a security boundary: a collision would need two different contents of the same
    // group of the same workflow. A digest from another build only costs a rewrite.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Splits `wf` for a save over `stored` (the chunk list of the version being replaced),
/// naming new chunk items with `new_id`.
pub fn plan(
    wf: &Workflow,
    stored: &[ChunkRef],
    mut new_id: impl FnMut() -> String,
) -> Result<Plan, serde_json::Error> {
    let cold = cold_groups(&wf.batches);
    let mut refs = Vec::with_capacity(cold.len());
    let mut writes = Vec::new();
    let mut kept = Vec::new();
    for &start in &cold {
        let group = &wf.batches[start..start + CHUNK_BATCHES];
        let json = serde_json::to_string(group)?;
        let digest = digest(&json);
        let (start, count) = (start as u32, CHUNK_BATCHES as u32);
        let same = stored
            .iter()
            .find(|r| r.start == start && r.count == count && r.digest == digest);
        match same {
            Some(r) => {
                kept.push(r.id.clone());
                refs.push(r.clone());
            }
            None => {
                let r = ChunkRef {
                    start,
                    count,
                    id: new_id(),
                    digest,
                };
                refs.push(r.clone());
                writes.push((r, json));
            }
        }
    }
    let stale = stored
        .iter()
        .filter(|r| !kept.contains(&r.id))
        .cloned()
        .collect();
    let doc = if refs.is_empty() {
        serde_json::to_string(wf)?
    } else {
        let mut inline = Vec::with_capacity(wf.batches.len() - cold.len() * CHUNK_BATCHES);
        let mut next = 0;
        for &start in &cold {
            inline.extend_from_slice(&wf.batches[next..start]);
            next = start + CHUNK_BATCHES;
        }
        inline.extend_from_slice(&wf.batches[next..]);
        let head = Workflow {
            batches: inline,
            ..header_fields(wf)
        };
        serde_json::to_string(&head)?
    };
    Ok(Plan {
        doc,
        refs,
        writes,
        stale,
    })
}

/// `wf` without its batches (they are the large part; the header chooses its own).
fn header_fields(wf: &Workflow) -> Workflow {
    Workflow {
        id: wf.id.clone(),
        spec: wf.spec.clone(),
        status: wf.status,
        bulk: wf.bulk,
        batches: Vec::new(),
        live: wf.live.clone(),
        outbox: wf.outbox.clone(),
        version: wf.version,
        created_at: wf.created_at,
        updated_at: wf.updated_at,
        last_error: wf.last_error.clone(),
        redrives: wf.redrives,
        completed_at: wf.completed_at,
        drain: wf.drain.clone(),
        replan: wf.replan.clone(),
        managed: wf.managed.clone(),
    }
}

/// Why chunks could not be put back together.
#[derive(Debug, PartialEq, Eq)]
pub enum AssembleError {
    /// A chunk the header names is not there: a newer save replaced it; read the header again.
    Missing(String),
    /// The header and its chunks disagree (hand-edited, or a bug).
    Corrupt(String),
}

/// The full workflow from the header's (inline batches, chunk list) and the chunk items'
/// batches by id.
pub fn assemble(
    mut head: Workflow,
    refs: &[ChunkRef],
    mut chunks: HashMap<String, Vec<Batch>>,
) -> Result<Workflow, AssembleError> {
    if refs.is_empty() {
        return Ok(head);
    }
    let mut refs = refs.to_vec();
    refs.sort_by_key(|r| r.start);
    let total = head.batches.len() + refs.iter().map(|r| r.count as usize).sum::<usize>();
    let mut inline = std::mem::take(&mut head.batches).into_iter();
    let mut out = Vec::with_capacity(total);
    for r in &refs {
        while out.len() < r.start as usize {
            match inline.next() {
                Some(b) => out.push(b),
                None => {
                    return Err(AssembleError::Corrupt(format!(
                        "chunk at {} lies past the {} batches before it",
                        r.start,
                        out.len()
                    )));
                }
            }
        }
        if out.len() != r.start as usize {
            return Err(AssembleError::Corrupt(format!(
                "chunks overlap at {}",
                r.start
            )));
        }
        let batches = chunks
            .remove(&r.id)
            .ok_or_else(|| AssembleError::Missing(r.id.clone()))?;
        if batches.len() != r.count as usize {
            return Err(AssembleError::Corrupt(format!(
                "chunk {} holds {} batches, the header says {}",
                r.id,
                batches.len(),
                r.count
            )));
        }
        out.extend(batches);
    }
    out.extend(inline);
    head.batches = out;
    Ok(head)
}

#[cfg(test)]
mod tests;
