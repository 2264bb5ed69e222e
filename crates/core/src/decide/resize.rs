//! Windows sized by observed record density (`target_records_per_run`): once
//! [`RESIZE_AFTER`] windows have completed, the windows nobody has started or prepared yet are
//! re-planned so that each carries about the target number of records, judged from the
//! records per millisecond the completed windows reported. Once per workflow: a plan that kept
//! moving would be hard to follow, and splitting (`split`) corrects a window that turns out
//! too big anyway.
//!
//! Crash safety: only *untouched* batches change — planned (not a split's half), pending,
//! never started, no flow prepared —
//! so no flow name, client token or effect key of theirs was ever used; they take the new
//! windows in place (same indexes), surplus ones become `Replanned`, extra windows are
//! appended with the next indexes. All of it is one transition.
//!
//! Bounds: a window is never shorter than the split floor (the last one absorbs the rest of
//! the range, so it is up to twice the length) and the item never holds more than
//! `MAX_BATCHES` batches because of a re-plan (the windows grow instead).

use chrono::TimeDelta;

use super::Ctx;
use crate::model::{Batch, BatchStatus, Replan};
use crate::plan::{MAX_BATCHES, Window, can_split};
use crate::spec::RESIZE_AFTER;

/// A planned window nobody has started or prepared. A split's halves are never re-planned:
/// they are what their parent's window runs as (`split_into`).
fn untouched(b: &Batch) -> bool {
    b.status == BatchStatus::Pending && b.attempt == 0 && !b.flow_ready && b.split_from.is_none()
}

fn millis(w: &Window) -> u64 {
    u64::try_from((w.end - w.start).num_milliseconds()).unwrap_or(0)
}

/// Re-plans the untouched windows if the target is set, enough windows completed and it has
/// not happened yet.
pub(super) fn resize(cx: &mut Ctx) {
    let Some(target) = cx.wf.spec.target_records_per_run else {
        return;
    };
    if cx.wf.replan.is_some() || !can_split(cx.wf.spec.connector) {
        return;
    }
    let done: Vec<&Batch> = cx
        .wf
        .batches
        .iter()
        .filter(|b| b.status == BatchStatus::Succeeded)
        .collect();
    if done.len() < RESIZE_AFTER {
        return;
    }
    let observed_records = done.iter().fold(0u64, |s, b| s.saturating_add(b.records));
    let observed_ms = done
        .iter()
        .fold(0u64, |s, b| s.saturating_add(millis(&b.window)));
    // Every window from the end of the last started or prepared one on is untouched, and
    // together they are exactly `[boundary, to)`.
    let Some(boundary) = cx
        .wf
        .runnable_batches()
        .filter(|b| !untouched(b))
        .map(|b| b.window.end)
        .max()
    else {
        return;
    };
    let mut tail: Vec<usize> = (0..cx.wf.batches.len())
        .filter(|&i| {
            let b = &cx.wf.batches[i];
            untouched(b) && b.window.start >= boundary
        })
        .collect();
    tail.sort_by_key(|&i| cx.wf.batches[i].window.start);
    let to = cx.wf.spec.to;
    let span = millis(&Window {
        start: boundary,
        end: to,
    });
    if tail.is_empty() || span == 0 {
        return;
    }
    let wanted = if observed_records == 0 {
        span
    } else {
        let w = u128::from(target) * u128::from(observed_ms) / u128::from(observed_records);
        u64::try_from(w).unwrap_or(u64::MAX)
    }
    .clamp(cx.wf.spec.split_floor_ms.min(span), span)
    .max(1);
    // New windows may take the tail's places; beyond that the item must not grow past the cap.
    let room = MAX_BATCHES
        .saturating_sub(cx.wf.batches.len())
        .saturating_add(tail.len())
        .max(1);
    let count = usize::try_from(span / wanted)
        .unwrap_or(usize::MAX)
        .clamp(1, room);
    let step = span / count as u64;
    let windows: Vec<Window> = (0..count)
        .map(|j| {
            let at = |k: usize| {
                i64::try_from(step.saturating_mul(k as u64))
                    .ok()
                    .and_then(|ms| boundary.checked_add_signed(TimeDelta::milliseconds(ms)))
                    .unwrap_or(to)
            };
            Window {
                start: at(j),
                end: if j + 1 == count { to } else { at(j + 1) },
            }
        })
        .collect();
    let Ok(first_new) = u32::try_from(cx.wf.batches.len()) else {
        return;
    };
    for (j, &pos) in tail.iter().enumerate() {
        let b = &mut cx.wf.batches[pos];
        match windows.get(j) {
            Some(w) => b.window = *w,
            None => b.status = BatchStatus::Replanned,
        }
    }
    for (k, w) in windows.iter().skip(tail.len()).enumerate() {
        let Some(index) = u32::try_from(k).ok().and_then(|k| first_new.checked_add(k)) else {
            break;
        };
        cx.wf.batches.push(Batch::pending(index, *w, None));
    }
    cx.wf.replan = Some(Replan {
        at: cx.now,
        observed_records,
        observed_ms,
        from: boundary,
        window_ms: step,
        windows: u32::try_from(count).unwrap_or(u32::MAX),
        replaced: u32::try_from(tail.len()).unwrap_or(u32::MAX),
    });
}
