//! Ledger of every record written into a Customer Profiles domain / object type.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::source::Record;

#[derive(Debug, Default)]
struct Entry {
    /// (write count, record timestamp) per record id: len() is distinct records, counts above
    /// 1 are duplicates; the timestamp lets a summary be restricted to a time window.
    counts: HashMap<String, (u32, i64)>,
    records_written: u64,
    duplicate_writes: u64,
    min_ts_ms: Option<i64>,
    max_ts_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    entries: BTreeMap<(String, String), Entry>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LedgerSummary {
    pub records_written: u64,
    pub distinct_records: u64,
    pub duplicate_writes: u64,
    pub min_record_timestamp: Option<String>,
    pub max_record_timestamp: Option<String>,
}

impl Ledger {
    pub fn write(&mut self, domain: &str, object_type: &str, records: &[Record]) {
        let e = self
            .entries
            .entry((domain.to_owned(), object_type.to_owned()))
            .or_default();
        for r in records {
            let (c, _) = e.counts.entry(r.id.clone()).or_insert((0, r.ts_ms));
            *c += 1;
            if *c > 1 {
                e.duplicate_writes += 1;
            }
            e.records_written += 1;
            e.min_ts_ms = Some(e.min_ts_ms.map_or(r.ts_ms, |m| m.min(r.ts_ms)));
            e.max_ts_ms = Some(e.max_ts_ms.map_or(r.ts_ms, |m| m.max(r.ts_ms)));
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
            s.distinct_records += e.counts.len() as u64;
            s.duplicate_writes += e.duplicate_writes;
            lo = match (lo, e.min_ts_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            hi = match (hi, e.max_ts_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
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
            for &(count, ts) in e.counts.values() {
                if ts < from_ms || ts >= to_ms {
                    continue;
                }
                s.records_written += u64::from(count);
                s.distinct_records += 1;
                s.duplicate_writes += u64::from(count.saturating_sub(1));
                lo = Some(lo.map_or(ts, |m: i64| m.min(ts)));
                hi = Some(hi.map_or(ts, |m: i64| m.max(ts)));
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

    #[test]
    fn window_summary_counts_only_records_inside_the_window() {
        let mut l = Ledger::default();
        let r = |id: &str, ts| Record {
            id: id.into(),
            ts_ms: ts,
        };
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
        let r = |id: &str, ts| Record {
            id: id.into(),
            ts_ms: ts,
        };
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
}
