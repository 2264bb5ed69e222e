//! Run failures that say the window was too big or took too long for one run: the cue for
//! splitting it (`decide::split`) instead of retrying the same window.
//!
//! Only AppFlow *run* failures are judged here (free text: the End report's `error`); an API
//! error is never a reason to split. The verdict of the main table still applies first: a
//! message it judges permanent, reconnect or source budget is never split.
//!
//! AWS documents no run-size or run-time limit for AppFlow and no wording for one
//! (`aws-wire-facts` §3.1: **UNCONFIRMED**), so the AppFlow rows are assumptions, matched
//! liberally; the Salesforce rows are that API's documented codes and messages.
//!
//! | fragment (case-insensitive) | cause | source |
//! |---|---|---|
//! | `QUERY_TIMEOUT`, `query timed out`, `query timeout` | the source query ran past Salesforce's limit (2 minutes for a Bulk API query) | Salesforce Bulk API developer guide, "How Bulk Queries Are Processed"; Salesforce API status codes (`QUERY_TIMEOUT`); airbytehq/airbyte #17503, #19947 (the error on large objects) |
//! | `Retried more than` | a Bulk API query's results took too long to retrieve, 15 (later 30) times | Salesforce Bulk API developer guide, "How Bulk Queries Are Processed" ("Retried more than fifteen times") |
//! | `OPERATION_TOO_LARGE` | the query touches too many records for one operation | Salesforce API status codes (`OPERATION_TOO_LARGE`); wording not checked here |
//! | `too many records`, `maximum number of records`, `record limit`, `records per flow run`, `records per run` | a per-run record limit | assumed (no AWS source); the simulator's `max_records_per_run` message |
//! | `run time limit`, `maximum run time`, `maximum flow run time`, `maximum execution time`, `execution time limit`, `time limit exceeded`, `execution timed out`, `run timed out` | a per-run time limit | assumed (no AWS source) |
//!
//! Deliberately absent: a bare `timeout` / `timed out` (a connection or gateway time-out says
//! nothing about the window's size, and every split costs runs) and `limit exceeded` (the
//! SaaS API allowance's `REQUEST_LIMIT_EXCEEDED` and AWS's rate limits share the words).

/// One row: fragments that mean "too big or too long for one run".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeRule {
    pub fragments: &'static [&'static str],
    pub cause: &'static str,
    pub source: &'static str,
}

pub const SIZE_RULES: &[SizeRule] = &[
    SizeRule {
        fragments: &["QUERY_TIMEOUT", "query timed out", "query timeout"],
        cause: "the source query ran past Salesforce's query time limit",
        source: "Salesforce Bulk API guide, How Bulk Queries Are Processed; Salesforce API status codes",
    },
    SizeRule {
        fragments: &["Retried more than"],
        cause: "a Salesforce Bulk API query's results took too long to retrieve, repeatedly",
        source: "Salesforce Bulk API guide, How Bulk Queries Are Processed",
    },
    SizeRule {
        fragments: &["OPERATION_TOO_LARGE"],
        cause: "the query touches too many records for one operation",
        source: "Salesforce API status codes",
    },
    SizeRule {
        fragments: &[
            "too many records",
            "maximum number of records",
            "record limit",
            "records per flow run",
            "records per run",
        ],
        cause: "a per-run record limit",
        source: "assumed (no AWS source); the simulator's max_records_per_run message",
    },
    SizeRule {
        fragments: &[
            "run time limit",
            "maximum run time",
            "maximum execution time",
            "execution time limit",
            "time limit exceeded",
            "execution timed out",
            "run timed out",
            // Assumed, like the rest of this row: the simulator's `max_run_time_ms` wording.
            "maximum flow run time",
        ],
        cause: "a per-run time limit",
        source: "assumed (no AWS source)",
    },
];

/// The row that says a failed run's window was too big or too long for one run, if any.
pub fn too_big_for_one_run(message: &str) -> Option<&'static SizeRule> {
    let lower = message.to_ascii_lowercase();
    SIZE_RULES.iter().find(|r| {
        r.fragments
            .iter()
            .any(|f| lower.contains(&f.to_ascii_lowercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Verdict, classify};

    #[test]
    fn every_fragment_matches_and_stays_transient_in_the_main_table() {
        for rule in SIZE_RULES {
            for f in rule.fragments {
                let message = format!("Flow run failed: {f} (window 2024-01-01 to 2024-03-01)");
                assert_eq!(too_big_for_one_run(&message), Some(rule), "{f}");
                // Splitting happens only for transient verdicts; none of these may be judged
                // otherwise, or the split would silently never happen.
                assert_eq!(classify(&message), Verdict::Transient, "{f}");
            }
        }
    }

    #[test]
    fn realistic_messages_split() {
        for m in [
            "QUERY_TIMEOUT: Your query request was running for too long.",
            "InvalidBatch : Retried more than fifteen times",
            "OPERATION_TOO_LARGE: exceeded 100000 distinct ids",
            "Flow run failed: the source query matched 120 records, more than the maximum \
             number of records per flow run (60). Reduce the flow's time window.",
            "The flow run exceeded the maximum run time",
            // The simulator's `max_run_time_ms` failure.
            "Flow execution timed out: the flow run would take 31000 ms, more than the maximum \
             flow run time (30000 ms). Reduce the flow's time window or filter.",
        ] {
            assert!(too_big_for_one_run(m).is_some(), "{m}");
            assert_eq!(classify(m), Verdict::Transient, "{m}");
        }
    }

    #[test]
    fn other_failures_do_not_split() {
        for m in [
            "Connection timed out",
            "Gateway Timeout",
            "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
            "Rate exceeded",
            "ConcurrentRequests limit exceeded",
            "INVALID_FIELD: No such column 'Foo__c' on entity 'Account'",
            "run failed without a message",
        ] {
            assert_eq!(too_big_for_one_run(m), None, "{m}");
        }
    }
}
