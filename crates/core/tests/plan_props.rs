//! Planner properties: exact cover of `[from, to)`, no gap, no overlap, no window longer than
//! the batch size, filters that tile the millisecond line; no panic anywhere in chrono's range
//! with any duration, and every spec at the validation bounds plans.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use chrono::{DateTime, TimeDelta, Utc};
use flowpilot_core::duration::IsoDuration;
use flowpilot_core::effect::FilterTask;
use flowpilot_core::plan::{filter_for, plan, windows};
use flowpilot_core::spec::SpecInput;
use proptest::prelude::*;

fn arb_duration() -> impl Strategy<Value = IsoDuration> {
    prop_oneof![
        (1u32..=24).prop_map(IsoDuration::months),
        (1u32..=120).prop_map(IsoDuration::days),
        (3600u64..=200_000).prop_map(|s| IsoDuration {
            months: 0,
            days: 0,
            seconds: s
        }),
        (1u32..=3, 1u32..=20, 0u64..=86_400).prop_map(|(m, d, s)| IsoDuration {
            months: m,
            days: d,
            seconds: s
        }),
    ]
}

fn arb_instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2000-01-01 .. 2030-01-01, at millisecond resolution (month ends and leap days included).
    (946_684_800_000i64..1_893_456_000_000)
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

/// Any instant chrono can represent, at millisecond resolution.
fn arb_any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (lo, hi) = (
        DateTime::<Utc>::MIN_UTC.timestamp_millis(),
        DateTime::<Utc>::MAX_UTC.timestamp_millis(),
    );
    prop_oneof![lo..=hi, Just(lo), Just(hi), (hi - 86_400_000 * 400)..=hi,]
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

/// Any duration the type can hold, biased to the extremes.
fn arb_any_duration() -> impl Strategy<Value = IsoDuration> {
    let months = prop_oneof![Just(0u32), Just(1200), Just(u32::MAX), any::<u32>()];
    let days = prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()];
    let seconds = prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()];
    (months, days, seconds)
        .prop_filter("zero", |(m, d, s)| *m > 0 || *d > 0 || *s > 0)
        .prop_map(|(months, days, seconds)| IsoDuration {
            months,
            days,
            seconds,
        })
}

/// Longest possible span of `d` (31-day months).
fn max_len(d: IsoDuration) -> TimeDelta {
    TimeDelta::days(i64::from(d.months) * 31 + i64::from(d.days))
        + TimeDelta::seconds(d.seconds as i64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn windows_cover_the_range_exactly(
        from in arb_instant(),
        span_ms in 1i64..(4 * 365 * 86_400_000),
        batch in arb_duration(),
    ) {
        let to = from + TimeDelta::milliseconds(span_ms);
        let Some(ws) = windows(from, to, batch, 10_000) else {
            return Err(TestCaseError::reject("too many windows"));
        };
        prop_assert!(!ws.is_empty());
        prop_assert_eq!(ws[0].start, from);
        prop_assert_eq!(ws[ws.len() - 1].end, to);
        for (i, w) in ws.iter().enumerate() {
            prop_assert!(w.start < w.end, "empty window {i}: {w:?}");
            // Anchored: every boundary is from + n×batch (clipped at `to`).
            let anchor_end = batch.add_to(from, i as u32 + 1).unwrap().min(to);
            prop_assert_eq!(w.end, anchor_end);
            prop_assert!(w.end - w.start <= max_len(batch), "window {i} longer than {batch}: {w:?}");
            if i + 1 < ws.len() {
                prop_assert_eq!(w.end, ws[i + 1].start, "gap or overlap after window {}", i);
            }
        }
    }

    #[test]
    fn plan_and_filters_tile_the_millisecond_line(
        months in 1u32..=48,
        batch_months in 1u32..=6,
        day in 1u32..=31,
    ) {
        let from = format!("2023-01-{:02}", day.min(28));
        let spec = SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            from: Some(from),
            batch_size: Some(format!("P{batch_months}M")),
            ..Default::default()
        };
        let from_t = flowpilot_core::spec::parse_timestamp(spec.from.as_deref().unwrap()).unwrap();
        let to = IsoDuration::months(months).add_to(from_t, 1).unwrap();
        let spec = SpecInput { to: Some(to.to_rfc3339()), ..spec }.validate(to).unwrap();
        let p = plan(&spec);
        prop_assert_eq!(p.bulk, to > IsoDuration::days(60).add_to(from_t, 1).unwrap());
        if !p.bulk {
            prop_assert!(p.batches.is_empty());
            prop_assert_eq!(p.continuous_first_execution_from, spec.from);
            return Ok(());
        }
        prop_assert_eq!(p.continuous_first_execution_from, spec.to);
        let mut next_lower = spec.from.timestamp_millis() - 1;
        for w in &p.batches {
            let Some(FilterTask::Between { lower_exclusive_ms, upper_exclusive_ms, .. }) = filter_for(&spec, w) else {
                return Err(TestCaseError::fail("salesforce windows filter with BETWEEN"));
            };
            // (lower, upper) exclusive = [start, end) in ms; the next window starts at `upper`.
            prop_assert_eq!(lower_exclusive_ms, next_lower);
            next_lower = upper_exclusive_ms - 1;
        }
        prop_assert_eq!(next_lower + 1, spec.to.timestamp_millis());
    }

    #[test]
    fn windows_never_panic_anywhere_in_chronos_range(
        a in arb_any_instant(),
        b in arb_any_instant(),
        batch in arb_any_duration(),
    ) {
        let (from, to) = (a.min(b), a.max(b));
        if let Some(ws) = windows(from, to, batch, 500) {
            // Whatever it returns still tiles the range.
            if from < to {
                prop_assert_eq!(ws[0].start, from);
                prop_assert_eq!(ws[ws.len() - 1].end, to);
            }
            for pair in ws.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
        }
    }

    #[test]
    fn specs_at_the_validation_bounds_plan_without_panicking(
        from_year in 1u32..=9998,
        years in 1u32..=9999,
        batch_years in 1u32..=100,
        threshold in prop_oneof![Just("PT1H".to_owned()), Just("P100Y".to_owned()), Just("P60D".to_owned())],
        connector in prop_oneof![Just("salesforce"), Just("zendesk")],
    ) {
        let to_year = (from_year + years).min(9999);
        let spec = SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some(connector.into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            from: Some(format!("{from_year:04}-01-01")),
            to: Some(format!("{to_year:04}-12-31T23:59:59.999Z")),
            batch_size: Some(format!("P{batch_years}Y")),
            bulk_threshold: Some(threshold),
            retry_base: Some("1h".into()),
            retry_cap: Some("24h".into()),
            max_retries: Some(20),
            concurrency: Some(100),
            degraded_threshold: Some(100),
            ..Default::default()
        };
        let now = DateTime::<Utc>::MAX_UTC;
        // Too many batches for the batch size is a validation problem, not a panic.
        let Ok(spec) = spec.validate(now) else {
            return Ok(());
        };
        let p = plan(&spec);
        for w in &p.batches {
            let _ = filter_for(&spec, w);
            prop_assert!(w.start < w.end);
        }
    }
}
