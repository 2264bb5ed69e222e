//! Split-plan properties (adaptive windows): whatever the sequence of splits, the windows that
//! run — every batch but the split ones — are exactly `[from, to)`, ordered, with no overlap
//! and no gap; no split produces a window shorter than the floor; a split batch's halves are
//! exactly its window; batch indexes stay the positions flow names are derived from.
//! Checked on the planner's `halve` alone and through `decide` over random run outcomes, with
//! and without the re-plan by record density (`target_records_per_run`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use chrono::{DateTime, TimeDelta, Utc};
use flowpilot_core::decide::{Policy, decide};
use flowpilot_core::ids::{FlowRole, WorkflowId, flow_name};
use flowpilot_core::input::{Input, RunReport};
use flowpilot_core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot_core::plan::{Window, halve};
use flowpilot_core::spec::SpecInput;
use proptest::prelude::*;

const TOO_BIG: &str = "Flow run failed: the source query matched 120 records, more than the \
                       maximum number of records per flow run (60)";

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `windows`, ordered by start, tile `[from, to)`: contiguous, non-empty, exact ends.
fn assert_tiles(mut windows: Vec<Window>, from: DateTime<Utc>, to: DateTime<Utc>) {
    windows.sort_by_key(|w| w.start);
    assert_eq!(windows.first().map(|w| w.start), Some(from), "{windows:?}");
    assert_eq!(windows.last().map(|w| w.end), Some(to), "{windows:?}");
    for w in &windows {
        assert!(w.start < w.end, "empty window {w:?}");
    }
    for pair in windows.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "gap or overlap: {pair:?}");
    }
}

fn arb_window() -> impl Strategy<Value = Window> {
    // 2000..2030 at ms resolution, 1 minute to 400 days long.
    (
        946_684_800_000i64..1_893_456_000_000,
        60_000i64..=400 * 86_400_000,
    )
        .prop_map(|(s, len)| {
            let start = DateTime::from_timestamp_millis(s).unwrap();
            Window {
                start,
                end: start + TimeDelta::milliseconds(len),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Splitting any leaf, any number of times, keeps an exact tiling above the floor.
    #[test]
    fn any_sequence_of_halvings_tiles_the_window(
        w in arb_window(),
        floor in 60_000u64..=86_400_000,
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let mut leaves = vec![w];
        for pick in picks {
            let i = pick.index(leaves.len());
            let leaf = leaves[i];
            if let Some((a, b)) = halve(&leaf, floor) {
                prop_assert_eq!((a.start, a.end, b.start, b.end), (leaf.start, b.start, a.end, leaf.end));
                prop_assert!(ms(a.end) - ms(a.start) >= floor as i64);
                prop_assert!(ms(b.end) - ms(b.start) >= floor as i64);
                leaves.splice(i..=i, [a, b]);
            } else {
                // Refused only where a half would be shorter than the floor.
                prop_assert!(ms(leaf.end) - ms(leaf.start) < 2 * floor as i64 + 2_000);
            }
        }
        assert_tiles(leaves, w.start, w.end);
    }
}

/// A report for batch `index`'s current attempt (no execution id: counts for it).
fn ended(wf: &WorkflowId, index: u32, ok: bool, records: u64) -> Input {
    Input::RunEnded(RunReport {
        flow_name: flow_name(wf, FlowRole::Batch(index)),
        role: FlowRole::Batch(index),
        execution_id: None,
        succeeded: ok,
        error: (!ok).then(|| TOO_BIG.to_owned()),
        records_processed: Some(records),
        record_failures: Some(0),
        record_failure_message: None,
        pull_start: None,
        pull_end: None,
        ended_at: None,
    })
}

fn check(wf: &Workflow, floor_ms: u64) {
    assert_tiles(
        wf.runnable_batches().map(|b| b.window).collect(),
        wf.spec.from,
        wf.spec.to,
    );
    for (pos, b) in wf.batches.iter().enumerate() {
        assert_eq!(b.index as usize, pos, "index is the position");
        let len = ms(b.window.end) - ms(b.window.start);
        if b.split_from.is_some() {
            assert!(len >= floor_ms as i64, "{b:?} below the floor {floor_ms}");
        }
        // A re-planned window is at least the floor too (or the whole rest of the range).
        if let Some(r) = &wf.replan
            && b.window.start >= r.from
            && b.split_from.is_none()
            && b.status.is_runnable()
        {
            let rest = ms(wf.spec.to) - ms(r.from);
            assert!(
                len >= (floor_ms as i64).min(rest),
                "{b:?} re-planned below the floor"
            );
        }
        if b.status == BatchStatus::Split {
            let halves: Vec<Window> = b
                .split_into
                .iter()
                .map(|&i| wf.batches[i as usize].window)
                .collect();
            assert_eq!(halves.len(), 2);
            assert_tiles(halves, b.window.start, b.window.end);
            for &i in &b.split_into {
                assert_eq!(wf.batches[i as usize].split_from, Some(b.index));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Through `decide`: running batches end in any order, each too big (split, or retried at
    /// the floor) or fine; the plan keeps tiling `[from, to)` after every transition, and a
    /// workflow whose runs eventually all succeed completes its bulk phase.
    #[test]
    fn decided_splits_keep_the_plan_exact(
        days in 1u32..=10,
        batch_days in 1u32..=4,
        floor_h in 1u64..=30,
        concurrency in 1u32..=3,
        target in proptest::option::of(1u64..=20),
        records_per_run in 0u64..=5,
        outcomes in proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..60),
    ) {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let from = t0 - TimeDelta::days(i64::from(days));
        let spec = SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            from: Some(from.to_rfc3339()),
            to: Some(t0.to_rfc3339()),
            batch_size: Some(format!("P{batch_days}D")),
            bulk_threshold: Some("PT1H".into()),
            concurrency: Some(concurrency),
            max_retries: Some(20),
            split_floor: Some(format!("{floor_h}h")),
            target_records_per_run: target,
            ..SpecInput::default()
        }
        .validate(t0)
        .unwrap();
        let floor_ms = spec.split_floor_ms;
        let id = WorkflowId::new("prop").unwrap();
        let policy = Policy::default();
        let mut wf = Workflow::new(id.clone(), spec, t0);
        wf = decide(&wf, Input::Start, t0, &policy).workflow;
        check(&wf, floor_ms);
        for (pick, ok) in outcomes {
            let running: Vec<u32> = wf
                .batches
                .iter()
                .filter(|b| b.status == BatchStatus::Running)
                .map(|b| b.index)
                .collect();
            if running.is_empty() {
                break; // only retries wait: nothing more to decide without a clock
            }
            let i = running[pick.index(running.len())];
            wf = decide(&wf, ended(&id, i, ok, records_per_run), t0, &policy).workflow;
            check(&wf, floor_ms);
        }
        // Then everything succeeds (retries become due): the bulk phase completes.
        for _ in 0..10_000 {
            let Some(b) = wf.batches.iter().find(|b| matches!(b.status, BatchStatus::Running | BatchStatus::RetryWait)) else {
                break;
            };
            let (i, attempt, waiting) = (b.index, b.attempt, b.status == BatchStatus::RetryWait);
            let input = if waiting {
                Input::RetryDue { batch: i, attempt, due_at: t0 }
            } else {
                ended(&id, i, true, records_per_run)
            };
            wf = decide(&wf, input, t0 + TimeDelta::days(2), &policy).workflow;
            check(&wf, floor_ms);
        }
        prop_assert_eq!(wf.status, WorkflowStatus::Linking);
        prop_assert!(wf.batches.iter().all(|b| b.status.is_done()));
    }
}
