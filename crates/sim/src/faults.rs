//! Fault plan: scripted run failures, record-level failures, connector credentials that
//! expire, a SaaS API allowance per connector profile, API throttling / 5xx, event loss and
//! duplication. crates/sim/README.md ("Fault plan") is the reference for every member.

use serde::{Deserialize, Serialize};

/// Salesforce's answer to an expired access token (REST API "Status Codes and Error
/// Responses": 401, `INVALID_SESSION_ID`; the text is Salesforce's `errorCode: message`).
/// What AppFlow relays in a run's error is not documented: this wording is assumed.
pub const DEFAULT_EXPIRED_MESSAGE: &str = "INVALID_SESSION_ID: Session expired or invalid";
/// Salesforce's answer once the org's rolling 24-hour API allowance is spent (API Request
/// Limits and Allocations: `REQUEST_LIMIT_EXCEEDED`; text as clients such as jsforce print it).
pub const DEFAULT_BUDGET_MESSAGE: &str = "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.";
/// A run whose window holds more source records than `max_records_per_run` fails with this,
/// `{records}` and `{limit}` filled in. AWS documents no per-run record limit for AppFlow and
/// no wording for one (aws-wire-facts §3.1, UNCONFIRMED): the text is assumed, shaped like
/// AppFlow's free-text run errors, and is what flowpilot's split classifier matches
/// (`classify::size`, "maximum number of records").
pub const RECORD_LIMIT_MESSAGE: &str = "Flow run failed: the source query matched {records} \
     records, more than the maximum number of records per flow run ({limit}). Reduce the \
     flow's time window or filter.";

/// [`RECORD_LIMIT_MESSAGE`] for a window of `records` over `limit`.
pub fn record_limit_message(records: usize, limit: u64) -> String {
    RECORD_LIMIT_MESSAGE
        .replace("{records}", &records.to_string())
        .replace("{limit}", &limit.to_string())
}

/// A run whose simulated duration (`run_time_ms_per_record` × its window's records) exceeds
/// `max_run_time_ms` fails with this, `{ms}` and `{limit}` filled in. AWS documents neither a
/// per-run time limit for AppFlow nor wording for one (aws-wire-facts §3.1, UNCONFIRMED): the
/// text is assumed, shaped like AppFlow's free-text run errors, and is what
/// flowpilot's split classifier matches (`classify::size`, "maximum flow run time").
pub const RUN_TIME_LIMIT_MESSAGE: &str = "Flow execution timed out: the flow run would take \
     {ms} ms, more than the maximum flow run time ({limit} ms). Reduce the flow's time window \
     or filter.";

/// [`RUN_TIME_LIMIT_MESSAGE`] for a run of `ms` over `limit`.
pub fn run_time_limit_message(ms: u64, limit: u64) -> String {
    RUN_TIME_LIMIT_MESSAGE
        .replace("{ms}", &ms.to_string())
        .replace("{limit}", &limit.to_string())
}

/// Salesforce's default allowance window: the preceding 24 hours.
pub const DAY_MS: u64 = 86_400_000;

/// What can go wrong, replaced wholesale with `POST /_sim/faults`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// Scripted run failures; the first matching rule wins.
    pub run_failures: Vec<RunFailure>,
    /// Runs that succeed but fail to write some of their records; the first matching rule wins.
    pub record_failures: Vec<RecordFailure>,
    /// Connector profiles whose credentials expire after some runs.
    pub expire_credentials: Vec<CredentialExpiry>,
    /// The SaaS application's rolling API allowance per connector profile.
    pub api_budget: Vec<ApiBudget>,
    /// Probability (0..=1) that an AppFlow / Customer Profiles API call answers 429 ThrottlingException.
    pub throttle_rate: f64,
    /// Probability (0..=1) that an API call answers 500 InternalServerException.
    pub server_error_rate: f64,
    /// Probability (0..=1) that an `AppFlow End Flow Run Report` is never published.
    pub drop_end_event_rate: f64,
    /// Probability (0..=1) that a published event is published a second time.
    pub duplicate_event_rate: f64,
    /// Delay before the duplicate is published.
    pub duplicate_event_delay_ms: u64,
    /// How long each run takes (uniform in [min, max]).
    pub run_duration_ms: DurationRange,
    /// A run whose window holds more source records than this fails before writing any
    /// ([`RECORD_LIMIT_MESSAGE`]); `None`: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_records_per_run: Option<u64>,
    /// StartFlow while this many runs are in progress in the account answers 402
    /// `ServiceQuotaExceededException`; `None`: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_runs_per_account: Option<u32>,
    /// CreateFlow (and PutIntegration's flow) while this many flows exist answers 402
    /// `ServiceQuotaExceededException`; `None`: no limit (AppFlow's default quota is 1,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_flows: Option<u32>,
    /// A run whose simulated duration exceeds this fails before writing any
    /// ([`RUN_TIME_LIMIT_MESSAGE`]); `None`: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_run_time_ms: Option<u64>,
    /// Simulated milliseconds one source record adds to a run's duration, for
    /// `max_run_time_ms` only (the run's real duration is still `run_duration_ms`).
    pub run_time_ms_per_record: u64,
}

impl FaultPlan {
    /// The simulated duration of a run over `records` records, if it is over the limit.
    pub fn run_time_over_limit(&self, records: u64) -> Option<(u64, u64)> {
        let limit = self.max_run_time_ms?;
        let ms = records.saturating_mul(self.run_time_ms_per_record);
        (ms > limit).then_some((ms, limit))
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            run_failures: Vec::new(),
            record_failures: Vec::new(),
            expire_credentials: Vec::new(),
            api_budget: Vec::new(),
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            drop_end_event_rate: 0.0,
            duplicate_event_rate: 0.0,
            duplicate_event_delay_ms: 200,
            run_duration_ms: DurationRange { min: 200, max: 400 },
            max_records_per_run: None,
            max_concurrent_runs_per_account: None,
            max_flows: None,
            max_run_time_ms: None,
            run_time_ms_per_record: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DurationRange {
    pub min: u64,
    pub max: u64,
}

/// "Runs `from_attempt..=to_attempt` (or exactly `attempts`) of flows whose name ends with
/// `flow_suffix` fail with `message`, after writing `partial_fraction` of their window."
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunFailure {
    /// Matches flows whose name ends with this (empty matches every flow).
    #[serde(default)]
    pub flow_suffix: String,
    /// Exact attempt numbers (1 = first run of that flow). Empty with no range = every run.
    #[serde(default)]
    pub attempts: Vec<u32>,
    #[serde(default)]
    pub from_attempt: Option<u32>,
    #[serde(default)]
    pub to_attempt: Option<u32>,
    /// Error message reported in the execution record and the End event.
    pub message: String,
    /// Fraction (0..=1) of the window's records written before the failure.
    #[serde(default)]
    pub partial_fraction: f64,
}

/// "Runs selected like [`RunFailure`] still end `Execution Successful`, but
/// `floor(fraction × records)` of their records are not written": AppFlow's record-level
/// failures (`num-of-record-failures`, `errorInfo.putFailuresCount`). Which records fail is
/// [`failing_records`]'s choice.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFailure {
    #[serde(default)]
    pub flow_suffix: String,
    #[serde(default)]
    pub attempts: Vec<u32>,
    #[serde(default)]
    pub from_attempt: Option<u32>,
    #[serde(default)]
    pub to_attempt: Option<u32>,
    /// Fraction (0..=1) of the run's records whose write fails.
    pub fraction: f64,
    /// `executionResult.errorInfo.executionMessage` of the run.
    pub message: String,
}

/// "The credentials of `connector_profile` expire once they have served `after_runs` runs."
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialExpiry {
    pub connector_profile: String,
    /// Runs (of any flow reading from the profile) that end with valid credentials, counted
    /// from when this plan was installed or the credentials were last renewed, whichever is
    /// later. 0 expires them at once.
    pub after_runs: u32,
    /// `false`: expire once per installed plan (renewed credentials stay valid). `true`: every
    /// renewal expires again after `after_runs` runs (a short refresh-token policy).
    #[serde(default)]
    pub repeat: bool,
    /// The failed runs' error.
    #[serde(default = "default_expired_message")]
    pub message: String,
}

/// "The SaaS application behind `connector_profile` allows `calls_per_day` API calls in any
/// `window_ms` (a rolling window, 24 h by default)."
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiBudget {
    pub connector_profile: String,
    pub calls_per_day: u64,
    /// Calls every run makes whatever its size.
    #[serde(default = "one")]
    pub calls_per_run: u64,
    /// With a value, a run also makes one call per this many records it reads (a page).
    #[serde(default)]
    pub records_per_call: Option<u64>,
    /// Length of the rolling window ("day") in milliseconds; tests compress it.
    #[serde(default = "day_ms")]
    pub window_ms: u64,
    /// The refused runs' error.
    #[serde(default = "default_budget_message")]
    pub message: String,
}

impl ApiBudget {
    /// Calls a run reading `records` records makes.
    pub fn run_cost(&self, records: u64) -> u64 {
        let pages = self
            .records_per_call
            .filter(|n| *n > 0)
            .map_or(0, |n| records.div_ceil(n));
        self.calls_per_run.saturating_add(pages)
    }
}

fn one() -> u64 {
    1
}

fn day_ms() -> u64 {
    DAY_MS
}

fn default_expired_message() -> String {
    DEFAULT_EXPIRED_MESSAGE.to_owned()
}

fn default_budget_message() -> String {
    DEFAULT_BUDGET_MESSAGE.to_owned()
}

/// The run selection shared by `run_failures` and `record_failures`: flows whose name ends
/// with `suffix` ("" = all), on attempts listed in `attempts` or within `from..=to`; with
/// neither, every attempt.
fn attempt_matches(
    suffix: &str,
    attempts: &[u32],
    from: Option<u32>,
    to: Option<u32>,
    flow_name: &str,
    attempt: u32,
) -> bool {
    if !flow_name.ends_with(suffix) {
        return false;
    }
    let ranged = from.is_some() || to.is_some();
    if attempts.is_empty() && !ranged {
        return true;
    }
    if attempts.contains(&attempt) {
        return true;
    }
    ranged && from.is_none_or(|f| attempt >= f) && to.is_none_or(|t| attempt <= t)
}

impl RunFailure {
    fn matches(&self, flow_name: &str, attempt: u32) -> bool {
        attempt_matches(
            &self.flow_suffix,
            &self.attempts,
            self.from_attempt,
            self.to_attempt,
            flow_name,
            attempt,
        )
    }
}

impl RecordFailure {
    fn matches(&self, flow_name: &str, attempt: u32) -> bool {
        attempt_matches(
            &self.flow_suffix,
            &self.attempts,
            self.from_attempt,
            self.to_attempt,
            flow_name,
            attempt,
        )
    }
}

fn check_fraction(name: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{name} must be within 0..=1, got {p}"))
    }
}

impl FaultPlan {
    pub fn validate(&self) -> Result<(), String> {
        check_fraction("throttle_rate", self.throttle_rate)?;
        check_fraction("server_error_rate", self.server_error_rate)?;
        check_fraction("drop_end_event_rate", self.drop_end_event_rate)?;
        check_fraction("duplicate_event_rate", self.duplicate_event_rate)?;
        if self.run_duration_ms.min > self.run_duration_ms.max {
            return Err("run_duration_ms.min must not exceed run_duration_ms.max".to_owned());
        }
        if self.max_records_per_run == Some(0) {
            return Err("max_records_per_run must be at least 1 (omit it for no limit)".into());
        }
        if self.max_concurrent_runs_per_account == Some(0) || self.max_flows == Some(0) {
            return Err(
                "max_concurrent_runs_per_account and max_flows must be at least 1 (omit them for no limit)"
                    .into(),
            );
        }
        for f in &self.run_failures {
            check_fraction("run_failures[].partial_fraction", f.partial_fraction)?;
        }
        for f in &self.record_failures {
            check_fraction("record_failures[].fraction", f.fraction)?;
        }
        for e in &self.expire_credentials {
            if e.connector_profile.is_empty() {
                return Err("expire_credentials[].connector_profile must not be empty".into());
            }
        }
        for b in &self.api_budget {
            if b.connector_profile.is_empty() {
                return Err("api_budget[].connector_profile must not be empty".into());
            }
            if b.window_ms == 0 {
                return Err("api_budget[].window_ms must be at least 1".into());
            }
            if b.records_per_call == Some(0) {
                return Err("api_budget[].records_per_call must be at least 1".into());
            }
        }
        Ok(())
    }

    pub fn scripted_failure(&self, flow_name: &str, attempt: u32) -> Option<&RunFailure> {
        self.run_failures
            .iter()
            .find(|f| f.matches(flow_name, attempt))
    }

    pub fn record_failure(&self, flow_name: &str, attempt: u32) -> Option<&RecordFailure> {
        self.record_failures
            .iter()
            .find(|f| f.matches(flow_name, attempt))
    }

    /// The first `expire_credentials` rule naming `profile`.
    pub fn credential_expiry(&self, profile: &str) -> Option<&CredentialExpiry> {
        self.expire_credentials
            .iter()
            .find(|e| e.connector_profile == profile)
    }

    /// The first `api_budget` rule naming `profile`.
    pub fn api_budget(&self, profile: &str) -> Option<&ApiBudget> {
        self.api_budget
            .iter()
            .find(|b| b.connector_profile == profile)
    }
}

/// Which of a run's `records` fail to be written under a `fraction` rule: the
/// `floor(fraction × len)` records with the smallest stable hash of (seed, record id), as
/// indices in ascending order. The choice depends only on the seed and the ids, so the same
/// records fail whichever run (or re-run) of them a rule matches, and a test can recompute it.
pub fn failing_records(seed: u64, ids: &[&str], fraction: f64) -> Vec<usize> {
    let n = (ids.len() as f64 * fraction.clamp(0.0, 1.0)).floor() as usize;
    let mut ranked: Vec<(u64, usize)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (crate::source::stable_hash(seed, id.as_bytes()), i))
        .collect();
    ranked.sort_unstable();
    let mut chosen: Vec<usize> = ranked.into_iter().take(n).map(|(_, i)| i).collect();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(suffix: &str, attempts: Vec<u32>, from: Option<u32>, to: Option<u32>) -> RunFailure {
        RunFailure {
            flow_suffix: suffix.into(),
            attempts,
            from_attempt: from,
            to_attempt: to,
            message: "x".into(),
            partial_fraction: 0.0,
        }
    }

    #[test]
    fn range_rule_matches_only_inside_range_and_suffix() {
        let r = rule("-live", vec![], Some(3), Some(5));
        assert!(!r.matches("fp-a-live", 2));
        assert!(r.matches("fp-a-live", 3));
        assert!(r.matches("fp-a-live", 5));
        assert!(!r.matches("fp-a-live", 6));
        assert!(!r.matches("fp-a-b0001", 4));
    }

    #[test]
    fn rule_without_attempts_matches_every_run() {
        let r = rule("", vec![], None, None);
        assert!(r.matches("anything", 1) && r.matches("anything", 99));
        let exact = rule("-b0001", vec![1, 2], None, None);
        assert!(exact.matches("fp-x-b0001", 2) && !exact.matches("fp-x-b0001", 3));
    }

    #[test]
    fn record_failure_rules_parse_from_the_documented_keys_and_match_like_run_failures() {
        let plan: FaultPlan = serde_json::from_value(serde_json::json!({
            "record_failures": [
                {"flow_suffix": "-b0002", "attempts": [1], "fraction": 0.1, "message": "m"},
                {"flow_suffix": "-live", "from_attempt": 2, "fraction": 1.0, "message": "all"}
            ]
        }))
        .unwrap();
        plan.validate().unwrap();
        assert_eq!(plan.record_failure("fp-w-b0002", 1).unwrap().message, "m");
        assert!(plan.record_failure("fp-w-b0002", 2).is_none());
        assert!(plan.record_failure("fp-w-live", 1).is_none());
        assert_eq!(plan.record_failure("fp-w-live", 7).unwrap().fraction, 1.0);
        let bad: FaultPlan = serde_json::from_value(serde_json::json!({
            "record_failures": [{"fraction": 1.5, "message": "m"}]
        }))
        .unwrap();
        assert!(bad.validate().unwrap_err().contains("fraction"));
        let unknown = serde_json::from_value::<FaultPlan>(serde_json::json!({
            "record_failures": [{"fraction": 0.5, "message": "m", "partial_fraction": 0.1}]
        }));
        assert!(unknown.is_err(), "unknown keys are refused");
    }

    #[test]
    fn failing_records_are_an_exact_deterministic_fraction() {
        let ids: Vec<String> = (0..200).map(|k| format!("sf/Account/3/{k}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let a = failing_records(42, &refs, 0.1);
        assert_eq!(a.len(), 20);
        assert_eq!(
            a,
            failing_records(42, &refs, 0.1),
            "same seed, same records"
        );
        assert!(a.windows(2).all(|w| w[0] < w[1]), "ascending, distinct");
        assert_ne!(
            a,
            failing_records(7, &refs, 0.1),
            "the seed changes the choice"
        );
        // Not simply the first records: the hash spreads them over the window.
        assert_ne!(a, (0..20).collect::<Vec<_>>());
        // Independent of order and of the other records in the run: a record's fate is its own.
        let half: Vec<&str> = refs[..100].to_vec();
        let b = failing_records(42, &half, 0.1);
        assert_eq!(b.len(), 10);
        assert_eq!(failing_records(42, &refs, 0.0), Vec::<usize>::new());
        assert_eq!(failing_records(42, &refs, 1.0).len(), 200);
        assert_eq!(
            failing_records(42, &refs[..9], 0.1),
            Vec::<usize>::new(),
            "floor"
        );
    }

    #[test]
    fn budget_rules_default_to_a_day_one_call_and_salesforce_wording() {
        let plan: FaultPlan = serde_json::from_value(serde_json::json!({
            "api_budget": [{"connector_profile": "sf", "calls_per_day": 40}],
            "expire_credentials": [{"connector_profile": "sf", "after_runs": 3}]
        }))
        .unwrap();
        plan.validate().unwrap();
        let b = plan.api_budget("sf").unwrap();
        assert_eq!((b.calls_per_run, b.window_ms), (1, DAY_MS));
        assert_eq!(b.message, DEFAULT_BUDGET_MESSAGE);
        assert_eq!(b.run_cost(5_000), 1);
        let paged = ApiBudget {
            records_per_call: Some(2_000),
            ..b.clone()
        };
        assert_eq!(paged.run_cost(5_000), 1 + 3);
        assert_eq!(paged.run_cost(0), 1);
        let e = plan.credential_expiry("sf").unwrap();
        assert_eq!((e.after_runs, e.repeat), (3, false));
        assert_eq!(e.message, DEFAULT_EXPIRED_MESSAGE);
        assert!(plan.api_budget("other").is_none());
        let zero: FaultPlan = serde_json::from_value(serde_json::json!({
            "api_budget": [{"connector_profile": "sf", "calls_per_day": 1, "window_ms": 0}]
        }))
        .unwrap();
        assert!(zero.validate().is_err());
    }
}
