//! The SaaS side of a connector profile: whether its credentials still authenticate, and how
//! much of the application's rolling API allowance is left (the `expire_credentials` and
//! `api_budget` members of the fault plan).
//!
//! AppFlow's `ConnectorProfile` has no member saying either (botocore's model: ARN, name,
//! type, label, `connectionMode`, `credentialsArn`, properties, `createdAt`, `lastUpdatedAt`,
//! `privateConnectionProvisioningState` for private connections only), so this state shows
//! on the wire only as failed runs and `ConnectorAuthenticationException`, and in full at
//! `GET /_sim/profiles`.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::faults::FaultPlan;
use crate::state::ConnectorProfile;

/// Per-profile state the fault plan drives.
#[derive(Debug, Default)]
pub struct SaasState {
    /// When the credentials expired and the error runs then report; `None` while valid.
    expired: Option<(DateTime<Utc>, String)>,
    /// UpdateConnectorProfile calls that supplied credentials.
    renewals: u32,
    /// Runs that authenticated since the plan was installed or the last renewal.
    runs_authenticated: u32,
    /// A non-repeating expiry rule already fired under the installed plan.
    expiry_fired: bool,
    /// (epoch ms, calls) of runs inside the budget window, oldest first.
    calls: VecDeque<(i64, u64)>,
    /// Runs refused because the allowance was spent.
    refused_runs: u64,
}

/// Why a run of a flow reading from this profile cannot proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The credentials expired: the run fails before reading anything.
    Expired(String),
    /// The API allowance is spent: the run fails before reading anything.
    OverBudget(String),
}

impl SaasState {
    /// Expire the credentials if the plan's rule says they have served enough runs.
    pub fn expire_if_due(&mut self, name: &str, plan: &FaultPlan, now: DateTime<Utc>) {
        let Some(rule) = plan.credential_expiry(name) else {
            return;
        };
        if self.expired.is_some() || (self.expiry_fired && !rule.repeat) {
            return;
        }
        if self.runs_authenticated >= rule.after_runs {
            tracing::info!(profile = name, "fault plan: connector credentials expired");
            self.expired = Some((now, rule.message.clone()));
            self.expiry_fired = true;
        }
    }

    /// The error of an expired profile, after applying the plan.
    pub fn expired_error(
        &mut self,
        name: &str,
        plan: &FaultPlan,
        now: DateTime<Utc>,
    ) -> Option<String> {
        self.expire_if_due(name, plan, now);
        self.expired.as_ref().map(|(_, m)| m.clone())
    }

    /// New credentials (UpdateConnectorProfile with `connectorProfileCredentials`).
    pub fn renew(&mut self) {
        self.expired = None;
        self.renewals += 1;
        self.runs_authenticated = 0;
    }

    /// A new plan restarts run counting (`after_runs` counts from here) and re-arms rules.
    /// Expired credentials stay expired and spent calls stay spent: they are the SaaS
    /// application's state, not the plan's.
    pub fn plan_replaced(&mut self) {
        self.runs_authenticated = 0;
        self.expiry_fired = false;
    }

    /// Admit a run reading `records` records now: authenticate (counting the run), then
    /// spend its API calls. A refused run spends nothing.
    pub fn admit_run(
        &mut self,
        name: &str,
        plan: &FaultPlan,
        records: u64,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        if let Some(msg) = self.expired_error(name, plan, now) {
            return Err(Refusal::Expired(msg));
        }
        self.runs_authenticated += 1;
        let Some(budget) = plan.api_budget(name) else {
            return Ok(());
        };
        let now_ms = now.timestamp_millis();
        self.prune(now_ms, budget.window_ms);
        let cost = budget.run_cost(records);
        let used = self.used();
        if used.saturating_add(cost) > budget.calls_per_day {
            self.refused_runs += 1;
            tracing::info!(
                profile = name,
                used,
                cost,
                "fault plan: SaaS API allowance spent"
            );
            return Err(Refusal::OverBudget(budget.message.clone()));
        }
        self.calls.push_back((now_ms, cost));
        Ok(())
    }

    fn prune(&mut self, now_ms: i64, window_ms: u64) {
        let window = i64::try_from(window_ms).unwrap_or(i64::MAX);
        while self
            .calls
            .front()
            .is_some_and(|(at, _)| now_ms.saturating_sub(*at) >= window)
        {
            self.calls.pop_front();
        }
    }

    fn used(&self) -> u64 {
        self.calls.iter().map(|(_, c)| c).sum()
    }

    /// `/_sim/profiles` view of the credentials and the allowance under `plan`.
    pub fn view(&mut self, name: &str, plan: &FaultPlan, now: DateTime<Utc>) -> Value {
        self.expire_if_due(name, plan, now);
        let credentials = json!({
            "state": if self.expired.is_some() { "expired" } else { "valid" },
            "expired_at": self.expired.as_ref().map(|(t, _)| *t),
            "error": self.expired.as_ref().map(|(_, m)| m.clone()),
            "renewals": self.renewals,
            "runs_authenticated": self.runs_authenticated,
        });
        let budget = plan.api_budget(name).map(|b| {
            let now_ms = now.timestamp_millis();
            self.prune(now_ms, b.window_ms);
            let used = self.used();
            let window = i64::try_from(b.window_ms).unwrap_or(i64::MAX);
            let next_refill = self
                .calls
                .front()
                .and_then(|(at, _)| DateTime::from_timestamp_millis(at.saturating_add(window)));
            json!({
                "calls_per_day": b.calls_per_day,
                "window_ms": b.window_ms,
                "used": used,
                "remaining": b.calls_per_day.saturating_sub(used),
                "next_refill_at": next_refill,
                "refused_runs": self.refused_runs,
            })
        });
        json!({ "credentials": credentials, "api_budget": budget })
    }
}

/// `GET /_sim/profiles` entry.
pub fn profile_json(p: &mut ConnectorProfile, plan: &FaultPlan, now: DateTime<Utc>) -> Value {
    let mut v = p.saas.view(&p.name, plan, now);
    v["name"] = Value::from(p.name.clone());
    v["arn"] = Value::from(p.arn.clone());
    v["connector_type"] = Value::from(p.connector_type.clone());
    v["last_updated_at"] = json!(p.updated_at);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{
        ApiBudget, CredentialExpiry, DEFAULT_BUDGET_MESSAGE, DEFAULT_EXPIRED_MESSAGE,
    };
    use chrono::Duration;

    fn expiring(after_runs: u32, repeat: bool) -> FaultPlan {
        FaultPlan {
            expire_credentials: vec![CredentialExpiry {
                connector_profile: "sf".into(),
                after_runs,
                repeat,
                message: DEFAULT_EXPIRED_MESSAGE.into(),
            }],
            ..FaultPlan::default()
        }
    }

    fn budget(calls_per_day: u64, window_ms: u64) -> FaultPlan {
        FaultPlan {
            api_budget: vec![ApiBudget {
                connector_profile: "sf".into(),
                calls_per_day,
                calls_per_run: 1,
                records_per_call: None,
                window_ms,
                message: DEFAULT_BUDGET_MESSAGE.into(),
            }],
            ..FaultPlan::default()
        }
    }

    #[test]
    fn credentials_serve_after_runs_runs_then_fail_until_renewed() {
        let (plan, now) = (expiring(3, false), Utc::now());
        let mut s = SaasState::default();
        for _ in 0..3 {
            assert_eq!(s.admit_run("sf", &plan, 10, now), Ok(()));
        }
        let refused = s.admit_run("sf", &plan, 10, now);
        assert_eq!(
            refused,
            Err(Refusal::Expired(DEFAULT_EXPIRED_MESSAGE.into()))
        );
        assert!(s.admit_run("sf", &plan, 10, now).is_err(), "stays expired");
        assert_eq!(s.view("sf", &plan, now)["credentials"]["state"], "expired");
        s.renew();
        for _ in 0..10 {
            assert_eq!(
                s.admit_run("sf", &plan, 10, now),
                Ok(()),
                "a non-repeating rule fires once"
            );
        }
        // Other profiles are untouched.
        let mut other = SaasState::default();
        assert_eq!(
            other.admit_run("hubspot", &expiring(0, false), 1, now),
            Ok(())
        );
    }

    #[test]
    fn repeating_rule_expires_every_renewal_and_a_new_plan_rearms() {
        let (plan, now) = (expiring(1, true), Utc::now());
        let mut s = SaasState::default();
        assert!(s.admit_run("sf", &plan, 1, now).is_ok());
        assert!(s.admit_run("sf", &plan, 1, now).is_err());
        s.renew();
        assert!(s.admit_run("sf", &plan, 1, now).is_ok());
        assert!(s.admit_run("sf", &plan, 1, now).is_err(), "expired again");

        let once = expiring(2, false);
        let mut t = SaasState::default();
        t.plan_replaced();
        assert!(t.admit_run("sf", &once, 1, now).is_ok());
        assert!(t.admit_run("sf", &once, 1, now).is_ok());
        assert!(t.admit_run("sf", &once, 1, now).is_err());
        t.renew();
        assert!(t.admit_run("sf", &once, 1, now).is_ok());
        t.plan_replaced();
        assert!(
            t.admit_run("sf", &once, 1, now).is_ok(),
            "counting restarts"
        );
        assert!(t.admit_run("sf", &once, 1, now).is_ok());
        assert!(
            t.admit_run("sf", &once, 1, now).is_err(),
            "re-armed by the new plan"
        );
        // after_runs 0: expired before any run, as soon as the plan is looked at.
        let mut u = SaasState::default();
        assert!(u.expired_error("sf", &expiring(0, false), now).is_some());
    }

    #[test]
    fn budget_refuses_runs_until_the_window_rolls() {
        let plan = budget(3, 1_000);
        // Whole milliseconds: the allowance is kept at millisecond precision.
        let t0 = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let mut s = SaasState::default();
        for i in 0..3 {
            let at = t0 + Duration::milliseconds(i * 100);
            assert_eq!(s.admit_run("sf", &plan, 1, at), Ok(()));
        }
        let at = t0 + Duration::milliseconds(500);
        assert_eq!(
            s.admit_run("sf", &plan, 1, at),
            Err(Refusal::OverBudget(DEFAULT_BUDGET_MESSAGE.into()))
        );
        let v = s.view("sf", &plan, at);
        assert_eq!(v["api_budget"]["used"], 3);
        assert_eq!(v["api_budget"]["remaining"], 0);
        assert_eq!(v["api_budget"]["refused_runs"], 1);
        let refill = v["api_budget"]["next_refill_at"]
            .as_str()
            .unwrap()
            .to_owned();
        let refill: DateTime<Utc> = refill.parse().unwrap();
        assert_eq!(refill, t0 + Duration::milliseconds(1_000));
        // The first call leaves the window at t0 + 1000 ms: one run fits again, not two.
        let later = t0 + Duration::milliseconds(1_000);
        assert_eq!(s.admit_run("sf", &plan, 1, later), Ok(()));
        assert!(s.admit_run("sf", &plan, 1, later).is_err());
        // A refused run spent nothing: after the whole window everything is back.
        let v = s.view("sf", &plan, t0 + Duration::milliseconds(2_100));
        assert_eq!(v["api_budget"]["remaining"], 3);
        assert_eq!(v["api_budget"]["next_refill_at"], Value::Null);
    }

    #[test]
    fn paged_runs_cost_more_and_expired_runs_spend_nothing() {
        let mut plan = budget(10, 60_000);
        plan.api_budget[0].records_per_call = Some(100);
        plan.expire_credentials = expiring(1, false).expire_credentials;
        let now = Utc::now();
        let mut s = SaasState::default();
        assert!(s.admit_run("sf", &plan, 450, now).is_ok(), "1 + 5 calls");
        assert_eq!(s.view("sf", &plan, now)["api_budget"]["used"], 6);
        assert!(matches!(
            s.admit_run("sf", &plan, 450, now),
            Err(Refusal::Expired(_))
        ));
        assert_eq!(s.view("sf", &plan, now)["api_budget"]["used"], 6);
        s.renew();
        assert!(
            matches!(
                s.admit_run("sf", &plan, 450, now),
                Err(Refusal::OverBudget(_))
            ),
            "6 + 6 > 10"
        );
        assert!(s.admit_run("sf", &plan, 300, now).is_ok(), "6 + 4 fits");
    }
}
