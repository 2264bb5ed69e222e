//! How a run ends: which of the causes the simulator models applies, and which of the
//! window's records get written. The first cause that applies wins, in the order a real run
//! meets them: cancellation, authenticating to the source, the source's API allowance, the
//! destination domain, the per-run record limit, a scripted failure, then record-level write
//! failures.

use chrono::{DateTime, Utc};

use crate::connector::Refusal;
use crate::faults::{FaultPlan, failing_records, record_limit_message, run_time_limit_message};
use crate::source::Record;
use crate::state::{ExecStatus, Run, State};

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: ExecStatus,
    /// The run's error (failed and canceled runs).
    pub error: Option<String>,
    /// Records read from the source: the oldest `processed` of the window.
    pub processed: usize,
    /// Indices (ascending, `< processed`) of the records whose write failed.
    pub put_failed: Vec<usize>,
    /// `errorInfo.executionMessage` of a successful run with record failures.
    pub record_failure_message: Option<String>,
}

impl Outcome {
    fn failed(error: String, processed: usize) -> Self {
        Self {
            status: ExecStatus::Error,
            error: Some(error),
            processed,
            put_failed: Vec::new(),
            record_failure_message: None,
        }
    }
}

/// Decide how `run` ends now, given the window's `records` (oldest first). Updates the
/// source profile's SaaS state (authenticated runs, API calls spent).
pub fn decide(
    st: &mut State,
    plan: &FaultPlan,
    seed: u64,
    run: &Run,
    records: &[Record],
    now: DateTime<Utc>,
) -> Outcome {
    let n = records.len();
    if run.status == ExecStatus::CancelStarted {
        let elapsed = (now - run.started_at).num_milliseconds().max(0) as f64;
        let frac = (elapsed / run.planned_ms.max(1) as f64).min(1.0);
        return Outcome {
            status: ExecStatus::Canceled,
            error: Some("Flow execution canceled".to_owned()),
            processed: (n as f64 * frac) as usize,
            put_failed: Vec::new(),
            record_failure_message: None,
        };
    }
    if let Some(p) = run
        .spec
        .source_profile
        .as_ref()
        .and_then(|name| st.profiles.get_mut(name))
        && let Err(refusal) = p.saas.admit_run(&p.name, plan, n as u64, now)
    {
        let (Refusal::Expired(msg) | Refusal::OverBudget(msg)) = refusal;
        return Outcome::failed(msg, 0);
    }
    if let Some(d) = run
        .spec
        .dest_domain
        .as_ref()
        .filter(|d| !st.domains.contains_key(*d))
    {
        return Outcome::failed(
            format!("Customer Profiles domain {d} does not exist or is not accessible"),
            0,
        );
    }
    // The limit is met while reading the source, before anything is written: a window too big
    // for one run writes nothing, so running its halves writes each record once.
    if let Some(limit) = plan.max_records_per_run.filter(|&l| n as u64 > l) {
        return Outcome::failed(record_limit_message(n, limit), 0);
    }
    // Like the record limit: the time the run would need is known from its window before it
    // writes anything (a design choice of the simulator, so the halves write each record once).
    if let Some((ms, limit)) = plan.run_time_over_limit(n as u64) {
        return Outcome::failed(run_time_limit_message(ms, limit), 0);
    }
    if let Some(f) = plan.scripted_failure(&run.flow_name, run.attempt) {
        let processed = ((n as f64 * f.partial_fraction).floor() as usize).min(n);
        return Outcome::failed(f.message.clone(), processed);
    }
    let (put_failed, record_failure_message) =
        match plan.record_failure(&run.flow_name, run.attempt) {
            Some(rule) => {
                let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
                let failed = failing_records(seed, &ids, rule.fraction);
                let message = (!failed.is_empty()).then(|| rule.message.clone());
                (failed, message)
            }
            None => (Vec::new(), None),
        };
    Outcome {
        status: ExecStatus::Successful,
        error: None,
        processed: n,
        put_failed,
        record_failure_message,
    }
}

/// Split the processed records into (written, put failed).
pub fn partition(records: &[Record], outcome: &Outcome) -> (Vec<Record>, Vec<Record>) {
    let processed = &records[..outcome.processed.min(records.len())];
    let mut failed = outcome.put_failed.iter().copied().peekable();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (i, r) in processed.iter().enumerate() {
        if failed.next_if_eq(&i).is_some() {
            bad.push(r.clone());
        } else {
            ok.push(r.clone());
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::SaasState;
    use crate::faults::{
        ApiBudget, CredentialExpiry, DEFAULT_BUDGET_MESSAGE, DEFAULT_EXPIRED_MESSAGE,
        RecordFailure, RunFailure,
    };
    use crate::flow::{FlowSpec, Trigger};
    use crate::source::MsWindow;
    use crate::state::{ConnectorProfile, Domain};
    use std::collections::BTreeMap;

    const SEED: u64 = 42;

    fn state() -> State {
        let now = Utc::now();
        let mut st = State::default();
        st.profiles.insert(
            "sf".into(),
            ConnectorProfile {
                name: "sf".into(),
                arn: "arn:aws:appflow:us-east-1:123456789012:connectorprofile/sf".into(),
                connector_type: "Salesforce".into(),
                connector_label: None,
                connection_mode: "Public".into(),
                properties: serde_json::json!({}),
                created_at: now,
                updated_at: now,
                saas: SaasState::default(),
            },
        );
        st.domains.insert(
            "acme".into(),
            Domain {
                name: "acme".into(),
                default_expiration_days: 365,
                request: serde_json::Map::new(),
                created_at: now,
                updated_at: now,
                object_types: BTreeMap::new(),
                integrations: BTreeMap::new(),
            },
        );
        st
    }

    fn run(flow: &str, attempt: u32) -> Run {
        let now = Utc::now();
        Run {
            execution_id: "e".into(),
            flow_name: flow.into(),
            flow_arn: String::new(),
            flow_uid: "u".into(),
            spec: FlowSpec {
                trigger: Trigger::OnDemand,
                source_type: "Salesforce".into(),
                source_key: "sf".into(),
                source_profile: Some("sf".into()),
                source_object: "Account".into(),
                dest_type: "CustomerProfiles".into(),
                dest_domain: Some("acme".into()),
                dest_object_type: Some("Account".into()),
                filter: MsWindow::default(),
            },
            attempt,
            status: ExecStatus::InProgress,
            started_at: now,
            updated_at: now,
            ended_at: None,
            planned_ms: 10,
            window: MsWindow::default(),
            incremental: None,
            records_processed: 0,
            records_written: 0,
            record_failures: 0,
            error: None,
            record_failure_message: None,
            pull_first: None,
            pull_last: None,
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n).map(rec).collect()
    }

    fn tenth_on_first_attempt() -> FaultPlan {
        FaultPlan {
            record_failures: vec![RecordFailure {
                flow_suffix: "-b0002".into(),
                attempts: vec![1],
                from_attempt: None,
                to_attempt: None,
                fraction: 0.1,
                message: "5 records failed: ObjectType validation".into(),
            }],
            ..FaultPlan::default()
        }
    }

    #[test]
    fn record_failures_keep_the_run_successful_and_name_the_records() {
        let (mut st, plan, recs) = (state(), tenth_on_first_attempt(), records(50));
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0002", 1),
            &recs,
            Utc::now(),
        );
        assert_eq!(o.status, ExecStatus::Successful);
        assert_eq!((o.processed, o.error.as_deref()), (50, None));
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(o.put_failed, failing_records(SEED, &ids, 0.1));
        assert_eq!(o.put_failed.len(), 5);
        assert_eq!(
            o.record_failure_message.as_deref(),
            Some("5 records failed: ObjectType validation")
        );
        let (ok, bad) = partition(&recs, &o);
        assert_eq!((ok.len(), bad.len()), (45, 5));

        // The re-run (attempt 2) is not matched: everything is written.
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0002", 2),
            &recs,
            Utc::now(),
        );
        assert_eq!((o.put_failed.len(), o.record_failure_message), (0, None));
        // Another batch is not matched either.
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0003", 1),
            &recs,
            Utc::now(),
        );
        assert!(o.put_failed.is_empty());
        // A rule that rounds down to nothing reports nothing.
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0002", 1),
            &recs[..9],
            Utc::now(),
        );
        assert_eq!((o.put_failed.len(), o.record_failure_message), (0, None));
    }

    #[test]
    fn expired_credentials_fail_the_run_before_the_budget_and_scripted_failures() {
        let mut st = state();
        let plan = FaultPlan {
            expire_credentials: vec![CredentialExpiry {
                connector_profile: "sf".into(),
                after_runs: 1,
                repeat: false,
                message: DEFAULT_EXPIRED_MESSAGE.into(),
            }],
            run_failures: vec![RunFailure {
                flow_suffix: String::new(),
                attempts: vec![],
                from_attempt: Some(2),
                to_attempt: None,
                message: "Rate exceeded".into(),
                partial_fraction: 0.5,
            }],
            ..tenth_on_first_attempt()
        };
        let recs = records(20);
        let first = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0000", 1),
            &recs,
            Utc::now(),
        );
        assert_eq!(first.status, ExecStatus::Successful);
        let second = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0000", 2),
            &recs,
            Utc::now(),
        );
        assert_eq!(second.status, ExecStatus::Error);
        assert_eq!(second.error.as_deref(), Some(DEFAULT_EXPIRED_MESSAGE));
        assert_eq!(second.processed, 0, "nothing read, nothing written");
        if let Some(p) = st.profiles.get_mut("sf") {
            p.saas.renew();
        }
        let third = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0000", 3),
            &recs,
            Utc::now(),
        );
        assert_eq!(
            (third.error.as_deref(), third.processed),
            (Some("Rate exceeded"), 10),
            "renewed: the scripted failure applies again"
        );
    }

    #[test]
    fn a_spent_allowance_fails_runs_of_every_flow_on_the_profile() {
        let mut st = state();
        let plan = FaultPlan {
            api_budget: vec![ApiBudget {
                connector_profile: "sf".into(),
                calls_per_day: 2,
                calls_per_run: 1,
                records_per_call: None,
                window_ms: 60_000,
                message: DEFAULT_BUDGET_MESSAGE.into(),
            }],
            ..FaultPlan::default()
        };
        let recs = records(5);
        let now = Utc::now();
        for flow in ["fp-a-b0000", "fp-b-b0000"] {
            let o = decide(&mut st, &plan, SEED, &run(flow, 1), &recs, now);
            assert_eq!(o.status, ExecStatus::Successful, "{flow}");
        }
        let o = decide(&mut st, &plan, SEED, &run("fp-c-live", 1), &recs, now);
        assert_eq!(o.error.as_deref(), Some(DEFAULT_BUDGET_MESSAGE));
        assert_eq!(o.processed, 0);
        // An S3 source has no connector profile: no allowance applies.
        let mut s3 = run("fp-d-b0000", 1);
        s3.spec.source_profile = None;
        assert_eq!(
            decide(&mut st, &plan, SEED, &s3, &recs, now).status,
            ExecStatus::Successful
        );
    }

    #[test]
    fn a_window_over_the_record_limit_fails_before_writing_anything() {
        let mut st = state();
        let plan = FaultPlan {
            max_records_per_run: Some(60),
            ..FaultPlan::default()
        };
        let now = Utc::now();
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0000", 1),
            &records(61),
            now,
        );
        assert_eq!(o.status, ExecStatus::Error);
        assert_eq!(
            o.processed, 0,
            "nothing written: the halves write each record once"
        );
        let message = o.error.unwrap_or_default();
        assert!(message.contains("matched 61 records"), "{message}");
        assert!(
            message.contains("maximum number of records per flow run (60)"),
            "{message}"
        );
        // At the limit the run goes through.
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0000", 2),
            &records(60),
            now,
        );
        assert_eq!(o.status, ExecStatus::Successful);
        assert_eq!(o.processed, 60);
        assert!(
            FaultPlan {
                max_records_per_run: Some(0),
                ..FaultPlan::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn a_run_over_the_time_limit_fails_before_writing_anything() {
        let mut st = state();
        let plan = FaultPlan {
            max_run_time_ms: Some(30_000),
            run_time_ms_per_record: 1_000,
            ..FaultPlan::default()
        };
        let now = Utc::now();
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-t-b0000", 1),
            &records(31),
            now,
        );
        assert_eq!(o.status, ExecStatus::Error);
        assert_eq!(o.processed, 0);
        let message = o.error.unwrap_or_default();
        assert!(message.contains("31000 ms"), "{message}");
        // The phrase flowpilot's split classifier matches (`classify::size`).
        assert!(message.contains("maximum flow run time"), "{message}");
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-t-b0000", 2),
            &records(30),
            now,
        );
        assert_eq!(o.status, ExecStatus::Successful);
    }

    #[test]
    fn a_missing_domain_and_cancellation_still_end_runs_as_before() {
        let mut st = state();
        st.domains.clear();
        let plan = FaultPlan::default();
        let o = decide(
            &mut st,
            &plan,
            SEED,
            &run("fp-w-b0000", 1),
            &records(3),
            Utc::now(),
        );
        assert!(o.error.unwrap_or_default().contains("acme does not exist"));
        let mut canceled = run("fp-w-b0000", 1);
        canceled.status = ExecStatus::CancelStarted;
        let o = decide(&mut st, &plan, SEED, &canceled, &records(3), Utc::now());
        assert_eq!(o.status, ExecStatus::Canceled);
    }

    fn rec(k: usize) -> Record {
        Record {
            id: format!("p/o/0/{k}"),
            ts_ms: k as i64,
        }
    }

    #[test]
    fn partition_splits_the_processed_prefix_by_failed_index() {
        let records: Vec<Record> = (0..6).map(rec).collect();
        let o = Outcome {
            status: ExecStatus::Successful,
            error: None,
            processed: 5,
            put_failed: vec![1, 4],
            record_failure_message: Some("m".into()),
        };
        let (ok, bad) = partition(&records, &o);
        assert_eq!(ok, vec![rec(0), rec(2), rec(3)]);
        assert_eq!(bad, vec![rec(1), rec(4)]);
    }
}
