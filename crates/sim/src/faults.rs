//! Fault plan: scripted run failures, API throttling / 5xx, event loss and duplication.

use serde::{Deserialize, Serialize};

/// What can go wrong, replaced wholesale with `POST /_sim/faults`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// Scripted run failures; the first matching rule wins.
    pub run_failures: Vec<RunFailure>,
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
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            run_failures: Vec::new(),
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            drop_end_event_rate: 0.0,
            duplicate_event_rate: 0.0,
            duplicate_event_delay_ms: 200,
            run_duration_ms: DurationRange { min: 200, max: 400 },
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

impl RunFailure {
    fn matches(&self, flow_name: &str, attempt: u32) -> bool {
        if !flow_name.ends_with(&self.flow_suffix) {
            return false;
        }
        let ranged = self.from_attempt.is_some() || self.to_attempt.is_some();
        if self.attempts.is_empty() && !ranged {
            return true;
        }
        if self.attempts.contains(&attempt) {
            return true;
        }
        ranged
            && self.from_attempt.is_none_or(|f| attempt >= f)
            && self.to_attempt.is_none_or(|t| attempt <= t)
    }
}

impl FaultPlan {
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("throttle_rate", self.throttle_rate),
            ("server_error_rate", self.server_error_rate),
            ("drop_end_event_rate", self.drop_end_event_rate),
            ("duplicate_event_rate", self.duplicate_event_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be within 0..=1, got {p}"));
            }
        }
        if self.run_duration_ms.min > self.run_duration_ms.max {
            return Err("run_duration_ms.min must not exceed run_duration_ms.max".to_owned());
        }
        for f in &self.run_failures {
            if !(0.0..=1.0).contains(&f.partial_fraction) {
                return Err(format!(
                    "run_failures[].partial_fraction must be within 0..=1, got {}",
                    f.partial_fraction
                ));
            }
        }
        Ok(())
    }

    pub fn scripted_failure(&self, flow_name: &str, attempt: u32) -> Option<&RunFailure> {
        self.run_failures
            .iter()
            .find(|f| f.matches(flow_name, attempt))
    }
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
}
