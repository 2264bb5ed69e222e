//! Adaptive windows, decided: a run too big or too long for one run splits its window in two,
//! the halves run next under fresh flow names, and splits stop at the floor.

use super::*;

const TOO_BIG: &str = "QUERY_TIMEOUT: Your query request was running for too long.";

/// Two batches of P1D from 2025-12-30, one at a time, the first one running as `x0`.
fn two_days(floor: &str) -> Workflow {
    let floor = floor.to_owned();
    let w = wf(|s| {
        s.from = Some("2025-12-30".into());
        s.batch_size = Some("P1D".into());
        s.bulk_threshold = Some("PT1H".into());
        s.split_floor = Some(floor);
    });
    let w = step(&w, Input::Start, t0()).workflow;
    step(&w, started(0, 1, "x0"), t0()).workflow
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn a_window_too_big_for_one_run_splits_and_its_halves_run_next() {
    let w = two_days("1h");
    let t = step(&w, report(0, "x0", false, Some(TOO_BIG)), t0());
    let b = &t.workflow.batches;
    assert_eq!(b.len(), 4);
    assert_eq!(b[0].status, BatchStatus::Split);
    assert_eq!(b[0].split_into, vec![2, 3]);
    assert_eq!(b[0].past_execution_ids, vec!["x0".to_owned()]);
    assert_eq!(
        (b[2].window.start, b[2].window.end, b[2].split_from),
        (
            at("2025-12-30T00:00:00Z"),
            at("2025-12-30T12:00:00Z"),
            Some(0)
        )
    );
    assert_eq!(
        (b[3].window.start, b[3].window.end),
        (at("2025-12-30T12:00:00Z"), at("2025-12-31T00:00:00Z"))
    );
    // The first half starts before batch 1, whose window is later; the split flow goes.
    assert_eq!(b[2].status, BatchStatus::Running);
    assert_eq!(b[1].status, BatchStatus::Pending);
    let k = kinds(&t);
    assert!(k.contains(&"create_flow b2/a1/create".to_owned()), "{k:?}");
    assert!(k.contains(&"start_flow b2/a1/start".to_owned()), "{k:?}");
    assert!(k.contains(&"delete_flow b0/delete".to_owned()), "{k:?}");
    assert!(!k.iter().any(|k| k.contains("retry")), "{k:?}");
    let split: Vec<_> = events(&t)
        .into_iter()
        .filter(|e| e.kind == HealthKind::BatchSplit)
        .collect();
    assert_eq!(split.len(), 1);
    let d = &split[0].detail;
    assert_eq!(d.event_id, "acme/batch-split/b0");
    assert_eq!(d.flow_name.as_deref(), Some("fp-acme-b0000"));
    assert_eq!(d.error.as_deref(), Some(TOO_BIG));
    assert_eq!(d.transient, Some(true));
    let halves = d.halves.as_ref().unwrap();
    assert_eq!(
        halves.iter().map(|h| h.index).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        d.progress.batches_total, 3,
        "the split batch counts through its halves"
    );
    // A duplicate of the report changes nothing.
    let again = step(&t.workflow, report(0, "x0", false, Some(TOO_BIG)), t0());
    assert!(again.is_noop(&t.workflow));
}

#[test]
fn the_halves_complete_the_workflow() {
    let w = two_days("1h");
    let mut w = step(&w, report(0, "x0", false, Some(TOO_BIG)), t0()).workflow;
    for (i, exec) in [(2, "h2"), (3, "h3"), (1, "x1")] {
        w = step(&w, started(i, 1, exec), t0()).workflow;
        w = step(&w, report(i, exec, true, None), t0()).workflow;
    }
    assert_eq!(w.status, WorkflowStatus::Linking);
    assert!(w.batches.iter().all(|b| b.status.is_done()));
}

#[test]
fn at_the_floor_the_failure_is_retried_as_usual() {
    // Halves of a day are 12 h: below a 13 h floor, so no split.
    let w = two_days("13h");
    let t = step(&w, report(0, "x0", false, Some(TOO_BIG)), t0());
    assert_eq!(t.workflow.batches.len(), 2);
    assert_eq!(t.workflow.batches[0].status, BatchStatus::RetryWait);
    assert!(
        events(&t)
            .iter()
            .any(|e| e.kind == HealthKind::BatchRetryScheduled)
    );
}

#[test]
fn splits_recurse_down_to_the_floor() {
    // 24 h → 12 h → 6 h with a 6 h floor; the 6 h half fails again and is retried.
    let mut w = two_days("6h");
    let mut running = (0u32, "x0".to_owned());
    for _ in 0..2 {
        let (i, exec) = running.clone();
        w = step(&w, report(i, &exec, false, Some(TOO_BIG)), t0()).workflow;
        let first = w.batches[i as usize].split_into[0];
        let exec = format!("h{first}");
        w = step(&w, started(first, 1, &exec), t0()).workflow;
        running = (first, exec);
    }
    let (i, exec) = running;
    let len = w.batches[i as usize].window.end - w.batches[i as usize].window.start;
    assert_eq!(len, TimeDelta::hours(6));
    let t = step(&w, report(i, &exec, false, Some(TOO_BIG)), t0());
    assert_eq!(
        t.workflow.batches[i as usize].status,
        BatchStatus::RetryWait
    );
    assert_eq!(t.workflow.batches.len(), w.batches.len());
}

#[test]
fn only_size_or_time_failures_split() {
    for message in [
        "Rate exceeded",
        "Connection timed out",
        "INVALID_FIELD: No such column 'X' on entity 'Account'",
        "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
        // A permanent verdict wins over the size wording.
        "QUERY_TIMEOUT while reading INVALID_FIELD",
    ] {
        let w = two_days("1h");
        let t = step(&w, report(0, "x0", false, Some(message)), t0());
        assert_eq!(t.workflow.batches.len(), 2, "{message}");
        assert_ne!(
            t.workflow.batches[0].status,
            BatchStatus::Split,
            "{message}"
        );
    }
}

#[test]
fn a_window_the_connector_cannot_bound_is_not_split() {
    let w = wf(|s| {
        s.connector = Some("zendesk".into());
        s.from = Some("2025-12-30".into());
        s.bulk_threshold = Some("PT1H".into());
    });
    let w = step(&w, Input::Start, t0()).workflow;
    let w = step(&w, started(0, 1, "x0"), t0()).workflow;
    let t = step(&w, report(0, "x0", false, Some(TOO_BIG)), t0());
    assert_eq!(t.workflow.batches.len(), 1);
    assert_eq!(t.workflow.batches[0].status, BatchStatus::RetryWait);
}

#[test]
fn cancel_leaves_a_split_batch_alone() {
    let w = two_days("1h");
    let w = step(&w, report(0, "x0", false, Some(TOO_BIG)), t0()).workflow;
    let t = step(&w, Input::Cancel { reason: None }, t0());
    let k = kinds(&t);
    assert!(!k.iter().any(|k| k.contains("cancel/b0/")), "{k:?}");
    assert!(
        k.contains(&"delete_flow cancel/b2/delete".to_owned()),
        "{k:?}"
    );
}
