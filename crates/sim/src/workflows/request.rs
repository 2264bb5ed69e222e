//! CreateIntegrationWorkflow's request: member validation and the batches to run.

use chrono::{DateTime, Months, Utc};
use serde_json::{Map, Value};

use super::Window;
use crate::error::{ApiError, Service};
use crate::wire::{invalid, parse_epoch};

const S: Service = Service::Profiles;
/// Without `Batches`, the admin guide's batch size.
const DEFAULT_BATCH_MONTHS: u32 = 2;
/// The simulator's guard against a runaway request (AWS documents no limit).
const MAX_STEPS: usize = 10_000;

pub fn valid_object_type(t: &str) -> bool {
    (1..=255).contains(&t.len())
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    arn.len() <= 512
        && parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && !parts[4].is_empty()
        && parts[4].bytes().all(|b| b.is_ascii_digit())
}

/// The batches of the request, or two-month batches from `FirstExecutionFrom` to now.
pub fn batches(
    integration: &Map<String, Value>,
    def: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Vec<Window>, ApiError> {
    if let Some(list) = integration.get("Batches").filter(|v| !v.is_null()) {
        let list = list
            .as_array()
            .ok_or_else(|| invalid(S, "Batches must be a list"))?;
        let out = list
            .iter()
            .map(|b| {
                let t = |k: &str| {
                    b.get(k)
                        .and_then(parse_epoch)
                        .ok_or_else(|| invalid(S, format!("Batch {k} is required (epoch seconds)")))
                };
                let (from, to) = (t("StartTime")?, t("EndTime")?);
                if from >= to {
                    return Err(invalid(S, "Batch StartTime must be before EndTime"));
                }
                Ok((from, to))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            return Err(invalid(S, "Batches must not be empty"));
        }
        return Ok(out);
    }
    let first = def
        .get("TriggerConfig")
        .and_then(|t| t.get("TriggerProperties"))
        .and_then(|t| t.get("Scheduled"))
        .and_then(|s| s.get("FirstExecutionFrom"))
        .and_then(parse_epoch)
        .ok_or_else(|| {
            invalid(
                S,
                "without Batches, TriggerConfig.TriggerProperties.Scheduled.FirstExecutionFrom is required",
            )
        })?;
    let mut out = Vec::new();
    let mut from = first;
    while from < now && out.len() < MAX_STEPS {
        let to = from
            .checked_add_months(Months::new(DEFAULT_BATCH_MONTHS))
            .unwrap_or(now)
            .min(now);
        out.push((from, to));
        from = to;
    }
    if out.is_empty() {
        return Err(invalid(S, "FirstExecutionFrom is not in the past"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn without_batches_two_month_batches_up_to_now() {
        let def = json!({"TriggerConfig": {"TriggerType": "Scheduled", "TriggerProperties":
            {"Scheduled": {"ScheduleExpression": "rate(1hours)", "FirstExecutionFrom": 1_704_067_200}}}});
        let b = batches(
            &Map::new(),
            def.as_object().unwrap(),
            at("2024-06-15T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[0],
            (at("2024-01-01T00:00:00Z"), at("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            b[2],
            (at("2024-05-01T00:00:00Z"), at("2024-06-15T00:00:00Z"))
        );
    }

    #[test]
    fn given_batches_are_kept_and_validated() {
        let i = json!({"Batches": [{"StartTime": 1_704_067_200, "EndTime": 1_704_153_600.5}]});
        let b = batches(i.as_object().unwrap(), &Map::new(), Utc::now()).unwrap();
        assert_eq!(b.len(), 1);
        let bad = json!({"Batches": [{"StartTime": 5, "EndTime": 5}]});
        assert!(batches(bad.as_object().unwrap(), &Map::new(), Utc::now()).is_err());
        assert!(valid_role_arn("arn:aws:iam::123456789012:role/x"));
        assert!(!valid_role_arn("arn:aws:iam::acct:role/x"));
    }
}
