//! Adaptive windows: a batch run that failed because its window was too big or took too long
//! for one run is split in two instead of retried; the halves run as batches of their own.
//!
//! - When: the run's message matches a row of `classify::size` *and* the main table judges it
//!   transient (a permanent, reconnect or source-budget verdict wins), the workflow is
//!   backfilling, the connector can bound a window on both sides, and both halves are at
//!   least the spec's `split_floor_ms`. Otherwise the failure takes the normal path
//!   (`bulk::failed`: retry with backoff, then fail), which is the fallback at the floor.
//! - How: the batch becomes `Split` and two `Pending` batches are appended with the next
//!   indexes. Appending keeps every existing index, flow name (`fp-{wf}-b{index:04}`), client
//!   token and effect key meaning what it meant, so the halves get fresh deterministic names
//!   and a replayed transition produces the same ones. The split batch's flow is deleted;
//!   its window is never run again as a whole.
//! - Order: `bulk::fill_slots` starts the pending batch with the earliest window, so the halves
//!   run next rather than after every later planned window.
//!
//! The runnable batches' windows (every batch but the split ones) tile `[from, to)` exactly,
//! ordered, with no gap or overlap, whatever the sequence of splits
//! (`crates/core/tests/split_props.rs`).

use super::Ctx;
use super::health::Draft;
use crate::classify::{Verdict, too_big_for_one_run};
use crate::effect::{EffectKey, EffectKind};
use crate::health::HealthKind;
use crate::ids::{FlowRole, flow_name};
use crate::model::{Batch, BatchStatus, ErrorInfo, WorkflowStatus};
use crate::plan::{can_split, halve};

/// Splits batch `idx`, whose current attempt failed with `err`, if the failure and the window
/// allow it; returns whether it did (if not, nothing changed).
pub(super) fn try_split(cx: &mut Ctx, idx: usize, err: &ErrorInfo) -> bool {
    if cx.wf.status != WorkflowStatus::Backfilling
        || err.verdict() != Verdict::Transient
        || !can_split(cx.wf.spec.connector)
        || too_big_for_one_run(&err.message).is_none()
    {
        return false;
    }
    let Some(b) = cx.wf.batches.get(idx) else {
        return false;
    };
    let Some((first, second)) = halve(&b.window, cx.wf.spec.split_floor_ms) else {
        return false;
    };
    // Indexes are u32 everywhere (flow names, effect keys); a workflow never gets near this.
    let Some(next) = u32::try_from(cx.wf.batches.len())
        .ok()
        .filter(|n| n.checked_add(1).is_some())
    else {
        return false;
    };
    let now = cx.now;
    let parent = b.index;
    let attempt = b.attempt;
    let b = &mut cx.wf.batches[idx];
    b.status = BatchStatus::Split;
    b.last_error = Some(err.clone());
    b.finished_at = Some(now);
    b.retry_at = None;
    b.paused = false;
    b.flow_ready = false;
    if let Some(id) = b.execution_id.take()
        && !b.past_execution_ids.contains(&id)
    {
        b.past_execution_ids.push(id);
    }
    b.split_into = vec![next, next + 1];
    let at = cx.wf.batches.len();
    for (index, window) in [(next, first), (next + 1, second)] {
        cx.wf
            .batches
            .push(Batch::pending(index, window, Some(parent)));
    }
    let name = flow_name(&cx.wf.id, FlowRole::Batch(parent));
    // A half first: the source is waiting, and the slot the split batch held is free.
    super::bulk::fill_slots(cx);
    cx.effect(
        EffectKey::BatchFlowDelete { batch: parent },
        EffectKind::DeleteFlow {
            flow_name: name.clone(),
        },
    );
    // A batch splits at most once in its life, so its index names the occurrence.
    let mut d = Draft::new(HealthKind::BatchSplit, format!("/b{parent}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(name);
    d.error = Some(err.clone());
    d.halves = vec![at, at + 1];
    cx.publish(d);
    true
}
