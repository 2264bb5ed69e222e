//! What the simulator understands of a flow definition: trigger, source, destination, filter.
//!
//! The request JSON is kept verbatim for DescribeFlow; this is the parsed view runs need.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use crate::error::{ApiError, Service};
use crate::source::MsWindow;
use crate::wire::{invalid, parse_epoch, req, req_str};

const S: Service = Service::AppFlow;

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    OnDemand,
    Scheduled(Schedule),
    Event,
}

impl Trigger {
    pub fn api_name(&self) -> &'static str {
        match self {
            Trigger::OnDemand => "OnDemand",
            Trigger::Scheduled(_) => "Scheduled",
            Trigger::Event => "Event",
        }
    }
    /// Spelling in run-report events (`ONDEMAND` is confirmed, the others are inferred).
    pub fn event_name(&self) -> &'static str {
        match self {
            Trigger::OnDemand => "ONDEMAND",
            Trigger::Scheduled(_) => "SCHEDULED",
            Trigger::Event => "EVENT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub expression: String,
    pub interval: Duration,
    pub first_execution_from: Option<DateTime<Utc>>,
    pub deactivation_threshold: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpec {
    pub trigger: Trigger,
    pub source_type: String,
    /// Connector profile, or the S3 bucket for S3 sources (no profile there).
    pub source_key: String,
    pub source_profile: Option<String>,
    pub source_object: String,
    pub dest_type: String,
    pub dest_domain: Option<String>,
    pub dest_object_type: Option<String>,
    pub filter: MsWindow,
}

impl FlowSpec {
    /// `source` in run reports: `S3` or `CONNECTORTYPE/<profile>`.
    pub fn event_source(&self) -> String {
        match &self.source_profile {
            Some(p) => format!("{}/{p}", self.source_type.to_uppercase()),
            None => self.source_type.to_uppercase(),
        }
    }

    pub fn event_destination_object(&self) -> String {
        match (&self.dest_domain, &self.dest_object_type) {
            (Some(d), Some(t)) => format!("{d}/{t}"),
            (Some(d), None) => d.clone(),
            _ => String::new(),
        }
    }
}

/// Parse the members CreateFlow / UpdateFlow require.
pub fn parse_spec(m: &Map<String, Value>) -> Result<FlowSpec, ApiError> {
    let trigger = parse_trigger(req(S, m, "triggerConfig")?)?;
    let src = req(S, m, "sourceFlowConfig")?
        .as_object()
        .ok_or_else(|| invalid(S, "sourceFlowConfig must be a structure"))?;
    let source_type = req_str(S, src, "connectorType")?.to_owned();
    let props = req(S, src, "sourceConnectorProperties")?
        .as_object()
        .ok_or_else(|| invalid(S, "sourceConnectorProperties must be a structure"))?;
    let (prop_key, inner) = props.iter().find(|(_, v)| v.is_object()).ok_or_else(|| {
        invalid(
            S,
            "sourceConnectorProperties must set exactly one connector",
        )
    })?;
    let inner = inner.as_object().cloned().unwrap_or_default();
    let source_profile = src
        .get("connectorProfileName")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (source_key, source_object) = if prop_key == "S3" {
        let bucket = req_str(S, &inner, "bucketName")?;
        let prefix = inner
            .get("bucketPrefix")
            .and_then(Value::as_str)
            .unwrap_or("");
        (bucket.to_owned(), prefix.to_owned())
    } else {
        let object = req_str(S, &inner, "object")?;
        let profile = source_profile.clone().ok_or_else(|| {
            invalid(
                S,
                format!("connectorProfileName is required for {source_type} sources"),
            )
        })?;
        (profile, object.to_owned())
    };

    let dests = req(S, m, "destinationFlowConfigList")?
        .as_array()
        .ok_or_else(|| invalid(S, "destinationFlowConfigList must be a list"))?;
    let [dest] = dests.as_slice() else {
        return Err(invalid(
            S,
            "destinationFlowConfigList must contain exactly one destination",
        ));
    };
    let dest = dest
        .as_object()
        .ok_or_else(|| invalid(S, "destination must be a structure"))?;
    let dest_type = req_str(S, dest, "connectorType")?.to_owned();
    let dprops = req(S, dest, "destinationConnectorProperties")?;
    let (dest_domain, dest_object_type) = match dprops.get("CustomerProfiles") {
        Some(cp) => {
            let cp = cp
                .as_object()
                .ok_or_else(|| invalid(S, "CustomerProfiles must be a structure"))?;
            (
                Some(req_str(S, cp, "domainName")?.to_owned()),
                cp.get("objectTypeName")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        }
        None => (None, None),
    };

    let tasks = req(S, m, "tasks")?
        .as_array()
        .ok_or_else(|| invalid(S, "tasks must be a list"))?;
    let filter = parse_filter(&source_type, tasks)?;

    Ok(FlowSpec {
        trigger,
        source_type,
        source_key,
        source_profile,
        source_object,
        dest_type,
        dest_domain,
        dest_object_type,
        filter,
    })
}

fn parse_trigger(v: &Value) -> Result<Trigger, ApiError> {
    let t = v
        .as_object()
        .ok_or_else(|| invalid(S, "triggerConfig must be a structure"))?;
    match req_str(S, t, "triggerType")? {
        "OnDemand" => Ok(Trigger::OnDemand),
        "Event" => Ok(Trigger::Event),
        "Scheduled" => {
            let sched = t
                .get("triggerProperties")
                .and_then(|p| p.get("Scheduled"))
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    invalid(
                        S,
                        "triggerProperties.Scheduled is required for Scheduled flows",
                    )
                })?;
            let expression = req_str(S, sched, "scheduleExpression")?.to_owned();
            let interval = parse_rate(&expression).ok_or_else(|| {
                invalid(
                    S,
                    format!("unsupported scheduleExpression {expression:?}: expected rate(N minutes|hours|days)"),
                )
            })?;
            let first_execution_from = match sched.get("firstExecutionFrom") {
                None | Some(Value::Null) => None,
                Some(v) => Some(parse_epoch(v).ok_or_else(|| {
                    invalid(S, "firstExecutionFrom must be a timestamp (epoch seconds)")
                })?),
            };
            let deactivation_threshold = match sched.get("flowErrorDeactivationThreshold") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(n @ 1..=100) => Some(n as u32),
                    _ => {
                        return Err(invalid(
                            S,
                            "flowErrorDeactivationThreshold must be between 1 and 100",
                        ));
                    }
                },
            };
            Ok(Trigger::Scheduled(Schedule {
                expression,
                interval,
                first_execution_from,
                deactivation_threshold,
            }))
        }
        other => Err(invalid(
            S,
            format!("triggerType {other:?} is not one of Scheduled, Event, OnDemand"),
        )),
    }
}

/// `rate(1hours)`, `rate(5 minutes)`, `rate(1 day)`.
pub fn parse_rate(expr: &str) -> Option<Duration> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?.trim();
    let digits: String = inner.chars().take_while(char::is_ascii_digit).collect();
    let n: i64 = digits.parse().ok().filter(|n| *n > 0)?;
    let unit = inner[digits.len()..].trim();
    match unit {
        "minute" | "minutes" => Some(Duration::minutes(n)),
        "hour" | "hours" => Some(Duration::hours(n)),
        "day" | "days" => Some(Duration::days(n)),
        _ => None,
    }
}

/// Range operators of non-PROJECTION Filter tasks, as a half-open `[lo, hi)` in epoch ms.
/// BETWEEN / GREATER_THAN / LESS_THAN are exclusive (as Airflow relies on).
fn parse_filter(source_type: &str, tasks: &[Value]) -> Result<MsWindow, ApiError> {
    let mut w = MsWindow::default();
    for task in tasks {
        if task.get("taskType").and_then(Value::as_str) != Some("Filter") {
            continue;
        }
        let Some(op) = task
            .get("connectorOperator")
            .and_then(Value::as_object)
            .and_then(|o| o.values().find_map(Value::as_str))
        else {
            continue;
        };
        let props = task.get("taskProperties").and_then(Value::as_object);
        let ms = |key: &str| -> Result<i64, ApiError> {
            props
                .and_then(|p| p.get(key))
                .and_then(Value::as_str)
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    invalid(
                        S,
                        format!("Filter task with operator {op} needs taskProperties.{key} as epoch milliseconds"),
                    )
                })
        };
        let zendesk = source_type.eq_ignore_ascii_case("Zendesk");
        let part = match op {
            "BETWEEN" => MsWindow {
                lo: Some(ms("LOWER_BOUND")? + 1),
                hi: Some(ms("UPPER_BOUND")?),
            },
            "GREATER_THAN" => MsWindow {
                lo: Some(ms("VALUE")? + 1),
                hi: None,
            },
            "GREATER_THAN_OR_EQUAL_TO" => MsWindow {
                lo: Some(ms("VALUE")?),
                hi: None,
            },
            "LESS_THAN" => MsWindow {
                lo: None,
                hi: Some(ms("VALUE")?),
            },
            "LESS_THAN_OR_EQUAL_TO" => MsWindow {
                lo: None,
                hi: Some(ms("VALUE")? + 1),
            },
            _ => continue,
        };
        if zendesk && op != "GREATER_THAN" {
            return Err(invalid(
                S,
                format!("Zendesk filters only support GREATER_THAN, not {op}"),
            ));
        }
        w = w.intersect(part);
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rate_expressions() {
        assert_eq!(parse_rate("rate(1hours)"), Some(Duration::hours(1)));
        assert_eq!(parse_rate("rate(5 minutes)"), Some(Duration::minutes(5)));
        assert_eq!(parse_rate("rate(1 day)"), Some(Duration::days(1)));
        assert_eq!(parse_rate("rate(0 days)"), None);
        assert_eq!(parse_rate("cron(0 * * * ? *)"), None);
        assert_eq!(parse_rate("rate(3 weeks)"), None);
    }

    #[test]
    fn between_bounds_are_exclusive() {
        let tasks = vec![
            json!({"taskType":"Filter","connectorOperator":{"Salesforce":"PROJECTION"},"sourceFields":["Id"]}),
            json!({"taskType":"Filter","connectorOperator":{"Salesforce":"BETWEEN"},"sourceFields":["LastModifiedDate"],
                   "taskProperties":{"DATA_TYPE":"datetime","LOWER_BOUND":"999","UPPER_BOUND":"2000"}}),
        ];
        let w = parse_filter("Salesforce", &tasks).unwrap();
        assert_eq!(
            w,
            MsWindow {
                lo: Some(1000),
                hi: Some(2000)
            }
        );
    }

    #[test]
    fn zendesk_between_and_bad_bounds_are_rejected() {
        let between = json!({"taskType":"Filter","connectorOperator":{"Zendesk":"BETWEEN"},"sourceFields":["updated_at"],
                     "taskProperties":{"LOWER_BOUND":"1","UPPER_BOUND":"2"}});
        assert!(parse_filter("Zendesk", &[between]).is_err());
        let bad = json!({"taskType":"Filter","connectorOperator":{"Salesforce":"GREATER_THAN"},"sourceFields":["x"],
                 "taskProperties":{"VALUE":"yesterday"}});
        assert!(parse_filter("Salesforce", &[bad]).is_err());
    }
}
