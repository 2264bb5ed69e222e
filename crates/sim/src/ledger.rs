//! Ledger of every record written into a Customer Profiles domain / object type, and of
//! every record a run failed to write (AppFlow's record-level failures).
//!
//! Every write counts, so the ledger never hides a rewrite: a record written a second time
//! (a re-run of a window, a retried partial run) is a duplicate write, whatever the reason.
//! A record whose write failed is not in the domain until some later run writes it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::source::Record;

/// What happened to one record id.
#[derive(Debug, Clone, Copy)]
struct Tally {
    writes: u32,
    put_failures: u32,
    ts_ms: i64,
}

#[derive(Debug, Default)]
struct Entry {
    tallies: HashMap<String, Tally>,
    records_written: u64,
    duplicate_writes: u64,
    /// Records with at least one write.
    distinct: u64,
    record_put_failures: u64,
    /// Records with a failed write and no write at all.
    failed_missing: u64,
    /// Over written records only.
    min_ts_ms: Option<i64>,
    max_ts_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    entries: BTreeMap<(String, String), Entry>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LedgerSummary {
    /// Every write, rewrites included.
    pub records_written: u64,
    /// Records written at least once.
    pub distinct_records: u64,
    /// Writes of a record beyond its first (`records_written - distinct_records`).
    pub duplicate_writes: u64,
    /// Record writes that failed (a record failing in two runs counts twice).
    pub record_put_failures: u64,
    /// Records whose write failed and that no run has written since: missing from the domain.
    pub failed_records_missing: u64,
    pub min_record_timestamp: Option<String>,
    pub max_record_timestamp: Option<String>,
}

fn widen(lo: &mut Option<i64>, hi: &mut Option<i64>, ts: i64) {
    *lo = Some(lo.map_or(ts, |m| m.min(ts)));
    *hi = Some(hi.map_or(ts, |m| m.max(ts)));
}

impl Ledger {
    fn entry(&mut self, domain: &str, object_type: &str) -> &mut Entry {
        self.entries
            .entry((domain.to_owned(), object_type.to_owned()))
            .or_default()
    }

    pub fn write(&mut self, domain: &str, object_type: &str, records: &[Record]) {
        let e = self.entry(domain, object_type);
        for r in records {
            let t = e.tallies.entry(r.id.clone()).or_insert(Tally {
                writes: 0,
                put_failures: 0,
                ts_ms: r.ts_ms,
            });
            if t.writes == 0 {
                e.distinct += 1;
                if t.put_failures > 0 {
                    e.failed_missing -= 1;
                }
            } else {
                e.duplicate_writes += 1;
            }
            t.writes += 1;
            e.records_written += 1;
            widen(&mut e.min_ts_ms, &mut e.max_ts_ms, r.ts_ms);
        }
    }

    /// Records a run read but could not write (they stay missing until written).
    pub fn put_failed(&mut self, domain: &str, object_type: &str, records: &[Record]) {
        let e = self.entry(domain, object_type);
        for r in records {
            let t = e.tallies.entry(r.id.clone()).or_insert(Tally {
                writes: 0,
                put_failures: 0,
                ts_ms: r.ts_ms,
            });
            if t.writes == 0 && t.put_failures == 0 {
                e.failed_missing += 1;
            }
            t.put_failures += 1;
            e.record_put_failures += 1;
        }
    }

    /// Totals for one object type, or for every object type of the domain when `None`.
    pub fn summary(&self, domain: &str, object_type: Option<&str>) -> LedgerSummary {
        let mut s = LedgerSummary::default();
        let (mut lo, mut hi) = (None::<i64>, None::<i64>);
        for ((d, t), e) in &self.entries {
            if d != domain || object_type.is_some_and(|o| o != t) {
                continue;
            }
            s.records_written += e.records_written;
            s.distinct_records += e.distinct;
            s.duplicate_writes += e.duplicate_writes;
            s.record_put_failures += e.record_put_failures;
            s.failed_records_missing += e.failed_missing;
            if let (Some(a), Some(b)) = (e.min_ts_ms, e.max_ts_ms) {
                widen(&mut lo, &mut hi, a);
                widen(&mut lo, &mut hi, b);
            }
        }
        s.min_record_timestamp = lo.map(crate::wire::rfc3339_ms);
        s.max_record_timestamp = hi.map(crate::wire::rfc3339_ms);
        s
    }

    /// Like [`Ledger::summary`] but only for records whose timestamp is in `[from_ms, to_ms)`,
    /// so a backfill can be checked while the continuous flow keeps writing newer records.
    pub fn summary_window(
        &self,
        domain: &str,
        object_type: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> LedgerSummary {
        let mut s = LedgerSummary::default();
        let (mut lo, mut hi) = (None::<i64>, None::<i64>);
        for ((d, t), e) in &self.entries {
            if d != domain || object_type.is_some_and(|o| o != t) {
                continue;
            }
            for t in e.tallies.values() {
                if t.ts_ms < from_ms || t.ts_ms >= to_ms {
                    continue;
                }
                s.record_put_failures += u64::from(t.put_failures);
                if t.writes == 0 {
                    s.failed_records_missing += u64::from(t.put_failures > 0);
                    continue;
                }
                s.records_written += u64::from(t.writes);
                s.distinct_records += 1;
                s.duplicate_writes += u64::from(t.writes - 1);
                widen(&mut lo, &mut hi, t.ts_ms);
            }
        }
        s.min_record_timestamp = lo.map(crate::wire::rfc3339_ms);
        s.max_record_timestamp = hi.map(crate::wire::rfc3339_ms);
        s
    }

    pub fn domain_object_count(&self, domain: &str) -> u64 {
        self.summary(domain, None).distinct_records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, ts: i64) -> Record {
        Record {
            id: id.into(),
            ts_ms: ts,
        }
    }

    #[test]
    fn window_summary_counts_only_records_inside_the_window() {
        let mut l = Ledger::default();
        l.write("d", "T", &[r("a", 10), r("b", 20), r("c", 30)]);
        l.write("d", "T", &[r("b", 20)]);
        let s = l.summary_window("d", Some("T"), 20, 30);
        assert_eq!(
            (s.distinct_records, s.records_written, s.duplicate_writes),
            (1, 2, 1)
        );
        let all = l.summary_window("d", None, 0, 100);
        assert_eq!((all.distinct_records, all.duplicate_writes), (3, 1));
    }

    #[test]
    fn rewrites_count_as_duplicates_not_distinct() {
        let mut l = Ledger::default();
        l.write("d", "T", &[r("a", 5), r("b", 9)]);
        l.write("d", "T", &[r("b", 9), r("c", 1)]);
        l.write("d", "U", &[r("a", 5)]);
        let s = l.summary("d", Some("T"));
        assert_eq!(
            (s.records_written, s.distinct_records, s.duplicate_writes),
            (4, 3, 1)
        );
        assert_eq!(
            s.min_record_timestamp.as_deref(),
            Some("1970-01-01T00:00:00.001Z")
        );
        assert_eq!(l.summary("d", None).distinct_records, 4);
        assert_eq!(l.summary("other", None), LedgerSummary::default());
    }

    /// A run with record failures, then a re-run of the whole window: the failed records are
    /// written once (not duplicates), the records the first run wrote are written twice.
    #[test]
    fn failed_puts_are_missing_until_written_and_a_full_rerun_duplicates_the_rest() {
        let mut l = Ledger::default();
        let all = [r("a", 1), r("b", 2), r("c", 3), r("d", 4)];
        l.write("d", "T", &[r("a", 1), r("c", 3)]);
        l.put_failed("d", "T", &[r("b", 2), r("d", 4)]);
        let s = l.summary("d", Some("T"));
        assert_eq!(
            (
                s.distinct_records,
                s.records_written,
                s.record_put_failures,
                s.failed_records_missing
            ),
            (2, 2, 2, 2)
        );
        assert_eq!(
            s.max_record_timestamp.as_deref(),
            Some("1970-01-01T00:00:00.003Z"),
            "failed records are not in the domain"
        );
        let w = l.summary_window("d", Some("T"), 0, 10);
        assert_eq!((w.distinct_records, w.failed_records_missing), (2, 2));

        l.write("d", "T", &all);
        let s = l.summary("d", Some("T"));
        assert_eq!(
            (
                s.distinct_records,
                s.records_written,
                s.duplicate_writes,
                s.failed_records_missing,
                s.record_put_failures
            ),
            (4, 6, 2, 0, 2)
        );
        let w = l.summary_window("d", Some("T"), 0, 10);
        assert_eq!(
            (
                w.distinct_records,
                w.duplicate_writes,
                w.failed_records_missing
            ),
            (4, 2, 0)
        );
        // A second failure of an already-written record does not make it missing.
        l.put_failed("d", "T", &[r("a", 1)]);
        let s = l.summary("d", Some("T"));
        assert_eq!((s.failed_records_missing, s.record_put_failures), (0, 3));
    }
}
