//! `target_records_per_run`: after the first three windows complete, the windows nobody has
//! touched are re-planned from the density they observed, once.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// December 2025 in daily batches, one at a time, aiming at 100 records per run.
fn december(target: Option<u64>) -> Workflow {
    let w = wf(|s| {
        s.from = Some("2025-12-01".into());
        s.batch_size = Some("P1D".into());
        s.bulk_threshold = Some("PT1H".into());
        s.target_records_per_run = target;
    });
    step(&w, Input::Start, t0()).workflow
}

/// Batch `i` runs as `x{i}` and reports 10 records.
fn run_ok(w: &Workflow, i: u32) -> Workflow {
    let exec = format!("x{i}");
    let w = step(w, started(i, 1, &exec), t0()).workflow;
    step(&w, report(i, &exec, true, None), t0()).workflow
}

#[test]
fn after_three_windows_the_untouched_ones_are_sized_by_density() {
    let mut w = december(Some(100));
    for i in 0..2 {
        w = run_ok(&w, i);
        assert!(w.replan.is_none());
    }
    assert_eq!(w.batches.len(), 31);
    let w = run_ok(&w, 2);
    // 30 records in 3 days: 10 a day, so 100 records is 10 days. Batch 3 was prepared ahead
    // (its flow exists) and keeps its day; 27 days remain: two windows of 13.5 days.
    let r = w.replan.clone().unwrap();
    assert_eq!(
        (r.observed_records, r.from, r.windows, r.replaced),
        (30, at("2025-12-05T00:00:00Z"), 2, 27)
    );
    assert_eq!(r.window_ms, 27 * 86_400_000 / 2);
    let b = &w.batches;
    assert_eq!(b.len(), 31, "fewer windows: no batch appended");
    assert_eq!(
        (b[3].window.start, b[3].window.end),
        (at("2025-12-04T00:00:00Z"), at("2025-12-05T00:00:00Z"))
    );
    assert_eq!(
        (b[4].window.start, b[4].window.end),
        (at("2025-12-05T00:00:00Z"), at("2025-12-18T12:00:00Z"))
    );
    assert_eq!(
        (b[5].window.start, b[5].window.end),
        (at("2025-12-18T12:00:00Z"), at("2026-01-01T00:00:00Z"))
    );
    assert!(b[6..].iter().all(|b| b.status == BatchStatus::Replanned));
    // Once: later successes leave the plan alone, and the workflow completes on 6 windows.
    let mut w = w;
    for i in 3..6 {
        w = run_ok(&w, i);
        assert_eq!(w.replan.as_ref(), Some(&r));
    }
    assert_eq!(w.status, WorkflowStatus::Linking);
    assert_eq!(w.runnable_batches().count(), 6);
}

#[test]
fn a_dense_source_gets_more_windows_appended() {
    // 10 records a day and a target of 5: half-day windows, appended beyond the tail's places.
    let mut w = december(Some(5));
    for i in 0..3 {
        w = run_ok(&w, i);
    }
    let r = w.replan.clone().unwrap();
    assert_eq!((r.windows, r.replaced), (54, 27));
    assert_eq!(r.window_ms, 43_200_000);
    assert_eq!(w.batches.len(), 31 + 27);
    assert_eq!(w.batches[31].split_from, None);
    assert_eq!(w.batches[57].window.end, at("2026-01-01T00:00:00Z"));
}

#[test]
fn windows_never_go_below_the_split_floor() {
    let mut w = wf(|s| {
        s.from = Some("2025-12-01".into());
        s.batch_size = Some("P1D".into());
        s.bulk_threshold = Some("PT1H".into());
        s.target_records_per_run = Some(1);
        s.split_floor = Some("6h".into());
    });
    w = step(&w, Input::Start, t0()).workflow;
    for i in 0..3 {
        w = run_ok(&w, i);
    }
    // 1 record is 2.4 h of this source: held at the 6 h floor.
    assert_eq!(w.replan.as_ref().unwrap().window_ms, 6 * 3_600_000);
}

#[test]
fn without_a_target_the_plan_stays() {
    let mut w = december(None);
    for i in 0..4 {
        w = run_ok(&w, i);
    }
    assert!(w.replan.is_none());
    assert_eq!(w.batches.len(), 31);
}
