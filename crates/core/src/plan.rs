//! Batch planner (docs/architecture.md, "Names and idempotency"): half-open, contiguous windows anchored at `from`.
//!
//! - There is a bulk phase iff `to > from + bulk_threshold` (the threshold is added to `from`
//!   with calendar arithmetic, so `P60D` means "more than 60 days after `from`").
//! - Window *i* is `[from + i×batch, min(from + (i+1)×batch, to))`: every boundary is computed
//!   from the anchor, so month ends never drift, and the last window is clipped at `to`.
//! - Zendesk (filters support only `GREATER_THAN`) and S3 (no timestamp filter) cannot select a
//!   window, so their bulk phase is one run over `[from, to)`.
//! - The continuous flow starts where the backfill ended (`to`), or at `from` without a bulk
//!   phase, so no record falls between the two.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::effect::FilterTask;
use crate::spec::{Connector, WorkflowSpec};

/// `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub bulk: bool,
    pub batches: Vec<Window>,
    pub continuous_first_execution_from: DateTime<Utc>,
    pub notes: Vec<String>,
}

/// Upper bound on batches per workflow. Storage no longer bounds it (finished and untouched
/// batches live in chunk items, README "Storage layout"); this is a sanity bound: 20,000 runs
/// is fifty years of daily windows, and each costs an AppFlow flow created and deleted.
pub const MAX_BATCHES: usize = 20_000;

/// Whether `[from, to)` is longer than the bulk threshold.
pub fn is_bulk(spec: &WorkflowSpec) -> bool {
    // Out of chrono's range means "later than any date": no bulk.
    spec.bulk_threshold
        .add_to(spec.from, 1)
        .is_some_and(|limit| spec.to > limit)
}

/// Window boundaries for `[from, to)` by `batch`, at most `limit` windows (None beyond that).
pub fn windows(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    batch: crate::duration::IsoDuration,
    limit: usize,
) -> Option<Vec<Window>> {
    let mut out = Vec::new();
    let mut start = from;
    let mut i: u32 = 0;
    while start < to {
        if out.len() >= limit {
            return None;
        }
        i = i.checked_add(1)?;
        // Beyond chrono's range: the window simply runs to `to`.
        let end = batch.add_to(from, i).map_or(to, |e| e.min(to));
        out.push(Window { start, end });
        start = end;
    }
    Some(out)
}

/// The plan for a validated spec (validation guarantees at most [`MAX_BATCHES`] windows).
pub fn plan(spec: &WorkflowSpec) -> Plan {
    let mut notes = Vec::new();
    let range = format!("[{}, {})", rfc3339(spec.from), rfc3339(spec.to));
    if !is_bulk(spec) {
        notes.push(format!(
            "{range} is not longer than the bulk threshold {}: no bulk phase; the continuous \
             integration is created directly with firstExecutionFrom = {}",
            spec.bulk_threshold,
            rfc3339(spec.from)
        ));
        return Plan {
            bulk: false,
            batches: Vec::new(),
            continuous_first_execution_from: spec.from,
            notes,
        };
    }
    let batches = match spec.connector {
        Connector::Zendesk => {
            notes.push(
                "zendesk filters support only GREATER_THAN, so a window cannot be bounded above: \
                 the bulk phase is a single run over the whole range (filter: updated after `from`)"
                    .to_owned(),
            );
            vec![Window {
                start: spec.from,
                end: spec.to,
            }]
        }
        Connector::S3 => {
            notes.push(
                "s3 sources have no timestamp filter: the bulk phase is a single run reading \
                 every object under the bucket/prefix"
                    .to_owned(),
            );
            vec![Window {
                start: spec.from,
                end: spec.to,
            }]
        }
        _ => windows(spec.from, spec.to, spec.batch_size, MAX_BATCHES).unwrap_or_else(|| {
            // Unreachable for validated specs; degrade to one run rather than panic.
            notes.push(format!(
                "more than {MAX_BATCHES} batches: planned as a single run"
            ));
            vec![Window {
                start: spec.from,
                end: spec.to,
            }]
        }),
    };
    notes.push(format!(
        "{} batch(es) of up to {} over {range}; then the continuous integration ({}) starts \
         at {}",
        batches.len(),
        spec.batch_size,
        spec.continuous.schedule,
        rfc3339(spec.to)
    ));
    Plan {
        bulk: true,
        batches,
        continuous_first_execution_from: spec.to,
        notes,
    }
}

/// The AppFlow Filter task that selects exactly `[start, end)` at millisecond granularity.
/// AppFlow's BETWEEN / GREATER_THAN bounds are exclusive, hence `start − 1 ms`.
/// Zendesk gets `GREATER_THAN start − 1 ms` only (its upper bound cannot be enforced; the
/// single-run plan makes that harmless), S3 none.
pub fn filter_for(spec: &WorkflowSpec, window: &Window) -> Option<FilterTask> {
    let field = spec.timestamp_field.clone()?;
    let lower = window.start.timestamp_millis().saturating_sub(1);
    match spec.connector {
        Connector::S3 => None,
        Connector::Zendesk => Some(FilterTask::GreaterThan {
            field,
            value_exclusive_ms: lower,
        }),
        _ => Some(FilterTask::Between {
            field,
            lower_exclusive_ms: lower,
            upper_exclusive_ms: window.end.timestamp_millis(),
        }),
    }
}

/// Whether a connector's filter can bound a window on both sides, so that a window can be
/// split: Zendesk (`GREATER_THAN` only) and S3 (no timestamp filter) cannot.
pub fn can_split(connector: Connector) -> bool {
    !matches!(connector, Connector::Zendesk | Connector::S3)
}

/// `w` cut in two at its middle, rounded down to a whole second so the halves' bounds stay
/// readable: `[start, mid)` and `[mid, end)`, contiguous and together exactly `w`. `None` when
/// either half would be shorter than `floor_ms`: the floor is what stops splits recursing.
pub fn halve(w: &Window, floor_ms: u64) -> Option<(Window, Window)> {
    let len = (w.end - w.start).num_milliseconds();
    let half = len / 2;
    let half = if half >= 1000 {
        half - half % 1000
    } else {
        half
    };
    let mid = w
        .start
        .checked_add_signed(chrono::TimeDelta::milliseconds(half))?;
    let floor = i64::try_from(floor_ms).ok()?;
    let (a, b) = (
        Window {
            start: w.start,
            end: mid,
        },
        Window {
            start: mid,
            end: w.end,
        },
    );
    let long_enough = |x: &Window| (x.end - x.start).num_milliseconds() >= floor.max(1);
    (long_enough(&a) && long_enough(&b)).then_some((a, b))
}

/// `2024-01-01T00:00:00Z` (fractional seconds only when present).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec_with;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn two_years_by_two_months_is_twelve_batches() {
        let spec = spec_with(|s| {
            s.from = Some("2024-01-01".into());
            s.to = Some("2026-01-01T00:00:00Z".into());
        });
        let p = plan(&spec);
        assert!(p.bulk);
        assert_eq!(p.batches.len(), 12);
        assert_eq!(
            p.batches[0],
            Window {
                start: t("2024-01-01T00:00:00Z"),
                end: t("2024-03-01T00:00:00Z")
            }
        );
        assert_eq!(
            p.batches[11],
            Window {
                start: t("2025-11-01T00:00:00Z"),
                end: t("2026-01-01T00:00:00Z")
            }
        );
        assert_eq!(p.continuous_first_execution_from, spec.to);
    }

    #[test]
    fn short_range_has_no_bulk_phase() {
        let spec = spec_with(|s| {
            s.from = Some("2025-12-01".into());
            s.to = Some("2026-01-01T00:00:00Z".into());
        });
        let p = plan(&spec);
        assert!(!p.bulk && p.batches.is_empty());
        assert_eq!(p.continuous_first_execution_from, spec.from);
    }

    #[test]
    fn exactly_the_threshold_is_not_bulk() {
        let spec = spec_with(|s| {
            s.from = Some("2024-01-01".into());
            s.to = Some("2024-03-01".into()); // + P60D = 2024-03-01 (leap year)
        });
        assert!(!is_bulk(&spec));
    }

    #[test]
    fn month_end_anchor_does_not_drift() {
        let w = windows(
            t("2024-01-31T00:00:00Z"),
            t("2024-05-15T00:00:00Z"),
            "P1M".parse().unwrap(),
            10,
        )
        .unwrap();
        let starts: Vec<_> = w.iter().map(|w| rfc3339(w.start)).collect();
        assert_eq!(
            starts,
            [
                "2024-01-31T00:00:00Z",
                "2024-02-29T00:00:00Z",
                "2024-03-31T00:00:00Z",
                "2024-04-30T00:00:00Z"
            ]
        );
        assert_eq!(w[3].end, t("2024-05-15T00:00:00Z"));
    }

    #[test]
    fn zendesk_and_s3_are_one_run_with_a_note() {
        for (connector, extra) in [("zendesk", None), ("s3", Some("bucket-name"))] {
            let spec = spec_with(|s| {
                s.connector = Some(connector.into());
                s.from = Some("2023-01-01".into());
                s.to = Some("2025-01-01".into());
                if let Some(b) = extra {
                    s.object = None;
                    s.s3_bucket = Some(b.into());
                }
            });
            let p = plan(&spec);
            assert_eq!(
                p.batches,
                [Window {
                    start: spec.from,
                    end: spec.to
                }]
            );
            assert!(p.notes[0].contains("single run"), "{:?}", p.notes);
        }
    }

    #[test]
    fn filters_use_exclusive_millisecond_bounds() {
        let spec = spec_with(|_| {});
        let w = Window {
            start: t("2022-05-26T00:00:00Z"),
            end: t("2022-05-27T00:00:00Z"),
        };
        assert_eq!(
            filter_for(&spec, &w),
            Some(FilterTask::Between {
                field: "LastModifiedDate".into(),
                lower_exclusive_ms: 1_653_523_199_999,
                upper_exclusive_ms: 1_653_609_600_000,
            })
        );
        let zd = spec_with(|s| s.connector = Some("zendesk".into()));
        assert_eq!(
            filter_for(&zd, &w),
            Some(FilterTask::GreaterThan {
                field: "updated_at".into(),
                value_exclusive_ms: 1_653_523_199_999
            })
        );
        let s3 = spec_with(|s| {
            s.connector = Some("s3".into());
            s.object = None;
            s.s3_bucket = Some("my-bucket".into());
        });
        assert_eq!(filter_for(&s3, &w), None);
    }
}
