//! Worker and CLI configuration: flags override `FLOWPILOT_*` environment variables, which
//! override an optional TOML file (`--config FILE`, same keys in lowercase without the prefix).
//! Everything is validated once at start, with errors that name what to set.
//!
//! AWS endpoints, region and credentials are not configured here: the SDK's standard chain
//! reads them (`AWS_ENDPOINT_URL*`, `AWS_REGION`, credentials providers).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use flowpilot_core::decide::Policy;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{env} is not set: set it, pass --{flag}, or put `{key} = ...` in the --config file ({what})"
    )]
    Missing {
        env: &'static str,
        flag: &'static str,
        key: &'static str,
        what: &'static str,
    },
    #[error("invalid {key} `{value}`: {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The raw, layered settings: clap fills flags and environment, the TOML file the rest.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Work queue URL (stack output QueueUrl).
    #[arg(long, env = "FLOWPILOT_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// DynamoDB state table name (stack output TableName).
    #[arg(long, env = "FLOWPILOT_TABLE")]
    pub table: Option<String>,
    /// EventBridge bus for health events (stack output HealthBusName).
    #[arg(long, env = "FLOWPILOT_HEALTH_BUS")]
    pub health_bus: Option<String>,
    /// Concurrent long-polling receivers [default: 1]. One keeps messages that arrive together
    /// in one ReceiveMessage; more only help a worker whose receives are slow.
    #[arg(long, env = "FLOWPILOT_POLLERS")]
    pub pollers: Option<u32>,
    /// Messages in flight at once: received and not yet deleted or handed back [default: 8].
    #[arg(long, env = "FLOWPILOT_CONCURRENCY")]
    pub concurrency: Option<u32>,
    /// Address of /healthz and /metrics; `off` disables it; port 0 picks one [default: 127.0.0.1:9464].
    #[arg(long, env = "FLOWPILOT_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// How long in-flight messages may take to finish after SIGTERM/SIGINT [default: 20s].
    #[arg(long, env = "FLOWPILOT_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// Reconcile asks AppFlow about a run after it has run this long; a rebuild waits this long
    /// for a late End report of the previous live flow [default: 10m].
    #[arg(long, env = "FLOWPILOT_DESCRIBE_AFTER")]
    pub describe_after: Option<String>,
    /// Reconcile cancels and retries runs longer than this; a rebuild cancels the previous live
    /// flow's runs past it [default: 6h].
    #[arg(long, env = "FLOWPILOT_MAX_RUN")]
    pub max_run: Option<String>,
    /// Reconcile restarts a retry this overdue (its message was lost) [default: 5m].
    #[arg(long, env = "FLOWPILOT_RETRY_GRACE")]
    pub retry_grace: Option<String>,
    /// A workflow whose effects have kept failing this long gets one `Workflow Stuck`
    /// [default: 15m].
    #[arg(long, env = "FLOWPILOT_STALL_AFTER")]
    pub stall_after: Option<String>,
    /// First delay before a stuck outbox is drained again; doubles each time [default: 10s].
    #[arg(long, env = "FLOWPILOT_DRAIN_BASE")]
    pub drain_base: Option<String>,
    /// Longest delay between drains of a stuck outbox (at most 15m, SQS's longest delay)
    /// [default: 5m].
    #[arg(long, env = "FLOWPILOT_DRAIN_CAP")]
    pub drain_cap: Option<String>,
    /// Also run the reconcile-all pass in-process this often, e.g. `2s` or `5m`; `off` leaves
    /// it to the scheduled `reconcile` command (EventBridge Scheduler in production) [default: off].
    #[arg(long, env = "FLOWPILOT_RECONCILE_EVERY")]
    pub reconcile_every: Option<String>,
    /// Outcomes of a workflow's effects are written with its next transition, or after it has
    /// been idle this long [default: 60s].
    #[arg(long, env = "FLOWPILOT_FLUSH_AFTER")]
    pub flush_after: Option<String>,
    /// Health events of different workflows within this long of each other share one
    /// PutEvents (they come after the next run started) [default: 100ms].
    #[arg(long, env = "FLOWPILOT_BATCH_LINGER")]
    pub batch_linger: Option<String>,
    /// Handled messages wait up to this long to share one DeleteMessageBatch; sooner once ten
    /// are waiting, or once half the handling permits wait on deletions [default: 1s].
    #[arg(long, env = "FLOWPILOT_DELETE_LINGER")]
    pub delete_linger: Option<String>,
    /// How long a workflow pauses its starts once the SaaS application's API allowance is
    /// spent (Salesforce REQUEST_LIMIT_EXCEEDED), 1s to 24h [default: 1h].
    #[arg(long, env = "FLOWPILOT_SOURCE_BUDGET_WAIT")]
    pub source_budget_wait: Option<String>,
    /// Concurrent runs per connector profile, across every workflow and worker; `0` turns
    /// the shared run budget off [default: 5].
    #[arg(long, env = "FLOWPILOT_PROFILE_RUN_LIMIT")]
    pub profile_run_limit: Option<u32>,
    /// Concurrent runs over the whole account, across every workflow and worker; `0` or unset:
    /// no account limit [default: unset].
    #[arg(long, env = "FLOWPILOT_ACCOUNT_RUN_LIMIT")]
    pub account_run_limit: Option<u32>,
    /// Live flows flowpilot holds in the account at once (batch flows and live integration
    /// flows; AppFlow's quota is 1,000 flows per account), across every workflow and worker;
    /// `0` turns the flow limit off [default: 900].
    #[arg(long, env = "FLOWPILOT_FLOW_LIMIT")]
    pub flow_limit: Option<u32>,
    /// How long a batch refused a run slot waits before asking again, 1s to 15m
    /// [default: 10s].
    #[arg(long, env = "FLOWPILOT_SLOT_RETRY")]
    pub slot_retry: Option<String>,
    /// A batch waiting this long for a run slot gets one `Batch Waiting For Run Slot`
    /// [default: 15m].
    #[arg(long, env = "FLOWPILOT_SLOT_WAIT_ALERT")]
    pub slot_wait_alert: Option<String>,
    /// The IAM role Customer Profiles assumes to run `--engine managed` workflows (stack
    /// output AppFlowExecutionRoleArn) [default: unset: managed workflows fail with a clear
    /// error].
    #[arg(long, env = "FLOWPILOT_MANAGED_ROLE_ARN")]
    pub managed_role_arn: Option<String>,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// `self` (flags and environment) over `lower` (the file).
    pub fn over(self, lower: RawConfig) -> RawConfig {
        RawConfig {
            queue_url: self.queue_url.or(lower.queue_url),
            table: self.table.or(lower.table),
            health_bus: self.health_bus.or(lower.health_bus),
            pollers: self.pollers.or(lower.pollers),
            concurrency: self.concurrency.or(lower.concurrency),
            metrics_addr: self.metrics_addr.or(lower.metrics_addr),
            shutdown_grace: self.shutdown_grace.or(lower.shutdown_grace),
            describe_after: self.describe_after.or(lower.describe_after),
            max_run: self.max_run.or(lower.max_run),
            retry_grace: self.retry_grace.or(lower.retry_grace),
            stall_after: self.stall_after.or(lower.stall_after),
            drain_base: self.drain_base.or(lower.drain_base),
            drain_cap: self.drain_cap.or(lower.drain_cap),
            reconcile_every: self.reconcile_every.or(lower.reconcile_every),
            flush_after: self.flush_after.or(lower.flush_after),
            batch_linger: self.batch_linger.or(lower.batch_linger),
            delete_linger: self.delete_linger.or(lower.delete_linger),
            source_budget_wait: self.source_budget_wait.or(lower.source_budget_wait),
            profile_run_limit: self.profile_run_limit.or(lower.profile_run_limit),
            account_run_limit: self.account_run_limit.or(lower.account_run_limit),
            flow_limit: self.flow_limit.or(lower.flow_limit),
            slot_retry: self.slot_retry.or(lower.slot_retry),
            slot_wait_alert: self.slot_wait_alert.or(lower.slot_wait_alert),
            managed_role_arn: self.managed_role_arn.or(lower.managed_role_arn),
        }
    }

    pub fn queue_url(&self) -> Result<String, ConfigError> {
        required(
            &self.queue_url,
            "FLOWPILOT_QUEUE_URL",
            "queue-url",
            "queue_url",
            "the work queue URL, stack output QueueUrl",
        )
    }

    pub fn table(&self) -> Result<String, ConfigError> {
        required(
            &self.table,
            "FLOWPILOT_TABLE",
            "table",
            "table",
            "the DynamoDB state table, stack output TableName",
        )
    }
}

fn required(
    value: &Option<String>,
    env: &'static str,
    flag: &'static str,
    key: &'static str,
    what: &'static str,
) -> Result<String, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(ConfigError::Missing {
            env,
            flag,
            key,
            what,
        }),
    }
}

/// The validated worker configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub queue_url: String,
    pub table: String,
    pub health_bus: String,
    pub pollers: usize,
    pub concurrency: usize,
    /// None: no HTTP endpoint.
    pub metrics_addr: Option<SocketAddr>,
    pub shutdown_grace: Duration,
    pub policy: Policy,
    /// None: no in-process reconcile ticker (the scheduled `reconcile` command does it).
    pub reconcile_every: Option<Duration>,
    pub flush_after: Duration,
    pub batch_linger: Duration,
    pub delete_linger: Duration,
    /// The shared budget; None: off (`FLOWPILOT_PROFILE_RUN_LIMIT=0` and `FLOWPILOT_FLOW_LIMIT=0`).
    pub budget: Option<crate::budget::Limits>,
    /// `FLOWPILOT_MANAGED_ROLE_ARN`; None: managed workflows fail, saying so.
    pub managed_role_arn: Option<String>,
}

impl WorkerConfig {
    pub fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        let defaults = Policy::default();
        let pollers = raw.pollers.unwrap_or(1);
        if !(1..=32).contains(&pollers) {
            return Err(ConfigError::Invalid {
                key: "FLOWPILOT_POLLERS",
                value: pollers.to_string(),
                expected: "between 1 and 32",
            });
        }
        let concurrency = raw.concurrency.unwrap_or(8);
        if !(1..=1024).contains(&concurrency) {
            return Err(ConfigError::Invalid {
                key: "FLOWPILOT_CONCURRENCY",
                value: concurrency.to_string(),
                expected: "between 1 and 1024",
            });
        }
        let metrics_addr = match raw.metrics_addr.as_deref().map(str::trim) {
            None | Some("") => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            Some("off") => None,
            Some(s) => Some(s.parse().map_err(|_| ConfigError::Invalid {
                key: "FLOWPILOT_METRICS_ADDR",
                value: s.to_owned(),
                expected: "HOST:PORT such as 127.0.0.1:9464 (port 0 picks one), or `off`",
            })?),
        };
        let slot_retry = slot_retry(&raw.slot_retry, defaults.slot_retry)?;
        let max_run = duration("FLOWPILOT_MAX_RUN", &raw.max_run, defaults.max_run_duration)?;
        let budget = crate::budget::Limits::new(
            Some(
                raw.profile_run_limit
                    .unwrap_or(crate::budget::DEFAULT_PROFILE_RUN_LIMIT),
            )
            .filter(|n| *n > 0),
            raw.account_run_limit.filter(|n| *n > 0),
            Some(raw.flow_limit.unwrap_or(crate::budget::DEFAULT_FLOW_LIMIT)).filter(|n| *n > 0),
            max_run,
            slot_retry,
        );
        Ok(Self {
            queue_url: raw.queue_url()?,
            table: raw.table()?,
            health_bus: required(
                &raw.health_bus,
                "FLOWPILOT_HEALTH_BUS",
                "health-bus",
                "health_bus",
                "the EventBridge bus for health events, stack output HealthBusName",
            )?,
            pollers: pollers as usize,
            concurrency: concurrency as usize,
            metrics_addr,
            shutdown_grace: duration(
                "FLOWPILOT_SHUTDOWN_GRACE",
                &raw.shutdown_grace,
                Duration::from_secs(20),
            )?,
            policy: Policy {
                describe_after: duration(
                    "FLOWPILOT_DESCRIBE_AFTER",
                    &raw.describe_after,
                    defaults.describe_after,
                )?,
                max_run_duration: duration(
                    "FLOWPILOT_MAX_RUN",
                    &raw.max_run,
                    defaults.max_run_duration,
                )?,
                retry_grace: duration(
                    "FLOWPILOT_RETRY_GRACE",
                    &raw.retry_grace,
                    defaults.retry_grace,
                )?,
                stall_after: duration(
                    "FLOWPILOT_STALL_AFTER",
                    &raw.stall_after,
                    defaults.stall_after,
                )?,
                drain_base: duration("FLOWPILOT_DRAIN_BASE", &raw.drain_base, defaults.drain_base)?,
                drain_cap: drain_cap(&raw.drain_cap, defaults.drain_cap)?,
                source_budget_wait: source_budget_wait(
                    &raw.source_budget_wait,
                    defaults.source_budget_wait,
                )?,
                slot_retry,
                slot_wait_alert: duration(
                    "FLOWPILOT_SLOT_WAIT_ALERT",
                    &raw.slot_wait_alert,
                    defaults.slot_wait_alert,
                )?,
            },
            reconcile_every: reconcile_every(&raw.reconcile_every)?,
            flush_after: duration(
                "FLOWPILOT_FLUSH_AFTER",
                &raw.flush_after,
                Duration::from_secs(60),
            )?,
            batch_linger: duration(
                "FLOWPILOT_BATCH_LINGER",
                &raw.batch_linger,
                Duration::from_millis(100),
            )?,
            delete_linger: delete_linger(&raw.delete_linger)?,
            budget,
            managed_role_arn: managed_role_arn(&raw.managed_role_arn)?,
        })
    }
}

/// An IAM role ARN (`arn:{partition}:iam::{account}:role/{name}`), or unset.
fn managed_role_arn(value: &Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = matches!(parts.as_slice(), ["arn", p, "iam", "", account, res]
        if !p.is_empty() && !account.is_empty() && res.strip_prefix("role/").is_some_and(|n| !n.is_empty()));
    if ok {
        Ok(Some(v.to_owned()))
    } else {
        Err(ConfigError::Invalid {
            key: "FLOWPILOT_MANAGED_ROLE_ARN",
            value: v.to_owned(),
            expected: "an IAM role ARN such as arn:aws:iam::123456789012:role/AppFlowExecutionRole \
                       (stack output AppFlowExecutionRoleArn)",
        })
    }
}

/// The question is a delayed command: SQS delays at most 15 minutes, and asking more often
/// than every second would only load the budget's item.
fn slot_retry(value: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let wait = duration("FLOWPILOT_SLOT_RETRY", value, default)?;
    if wait < Duration::from_secs(1) || wait > Duration::from_secs(900) {
        return Err(ConfigError::Invalid {
            key: "FLOWPILOT_SLOT_RETRY",
            value: value.clone().unwrap_or_default(),
            expected: "a duration from 1s to 15m",
        });
    }
    Ok(wait)
}

/// SQS delays a message at most 15 minutes: a longer cap could not be honoured.
fn drain_cap(value: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let cap = duration("FLOWPILOT_DRAIN_CAP", value, default)?;
    if cap > Duration::from_secs(900) || cap.is_zero() {
        return Err(ConfigError::Invalid {
            key: "FLOWPILOT_DRAIN_CAP",
            value: value.clone().unwrap_or_default(),
            expected: "a duration from 1s to 15m (SQS delays a message at most 15 minutes)",
        });
    }
    Ok(cap)
}

/// A pause shorter than a second would be a busy retry; longer than Salesforce's 24-hour
/// window would wait past the point where the whole allowance has come back.
fn source_budget_wait(value: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let wait = duration("FLOWPILOT_SOURCE_BUDGET_WAIT", value, default)?;
    if wait < Duration::from_secs(1) || wait > Duration::from_secs(86_400) {
        return Err(ConfigError::Invalid {
            key: "FLOWPILOT_SOURCE_BUDGET_WAIT",
            value: value.clone().unwrap_or_default(),
            expected: "a duration from 1s to 24h (the SaaS API allowance is a rolling 24 hours)",
        });
    }
    Ok(wait)
}

fn duration(
    key: &'static str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(s) => parse_duration(s).ok_or_else(|| ConfigError::Invalid {
            key,
            value: s.to_owned(),
            expected: "a duration such as 500ms, 20s, 10m or 6h (a bare number is seconds)",
        }),
    }
}

/// Up to 10 s: a handled message not deleted yet is redelivered if the worker dies, and it
/// holds a handling permit meanwhile.
fn delete_linger(value: &Option<String>) -> Result<Duration, ConfigError> {
    let d = duration("FLOWPILOT_DELETE_LINGER", value, Duration::from_secs(1))?;
    if d > Duration::from_secs(10) {
        return Err(ConfigError::Invalid {
            key: "FLOWPILOT_DELETE_LINGER",
            value: value.clone().unwrap_or_default(),
            expected: "a duration of at most 10s",
        });
    }
    Ok(d)
}

/// `off` (or unset): no ticker. A zero period would spin, so it is refused.
fn reconcile_every(value: &Option<String>) -> Result<Option<Duration>, ConfigError> {
    const KEY: &str = "FLOWPILOT_RECONCILE_EVERY";
    const EXPECTED: &str = "`off` or a positive duration such as 2s or 5m";
    match value.as_deref().map(str::trim) {
        None | Some("") | Some("off") => Ok(None),
        Some(s) => match parse_duration(s) {
            Some(d) if !d.is_zero() => Ok(Some(d)),
            _ => Err(ConfigError::Invalid {
                key: KEY,
                value: s.to_owned(),
                expected: EXPECTED,
            }),
        },
    }
}

/// `500ms`, `20s`, `10m`, `6h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RawConfig {
        RawConfig {
            queue_url: Some("http://q".into()),
            table: Some("t".into()),
            health_bus: Some("b".into()),
            ..RawConfig::default()
        }
    }

    #[test]
    fn the_managed_role_is_optional_and_must_be_a_role_arn() {
        assert_eq!(
            WorkerConfig::from_raw(&base()).unwrap().managed_role_arn,
            None
        );
        let arn = "arn:aws:iam::123456789012:role/fp-AppFlowExecutionRole";
        let c = WorkerConfig::from_raw(&RawConfig {
            managed_role_arn: Some(arn.into()),
            ..base()
        })
        .unwrap();
        assert_eq!(c.managed_role_arn.as_deref(), Some(arn));
        for bad in [
            "role",
            "arn:aws:iam::1:user/x",
            "arn:aws:s3:::b",
            "arn:aws:iam::1:role/",
        ] {
            let e = WorkerConfig::from_raw(&RawConfig {
                managed_role_arn: Some(bad.into()),
                ..base()
            })
            .unwrap_err();
            assert!(e.to_string().contains("FLOWPILOT_MANAGED_ROLE_ARN"), "{e}");
        }
    }

    #[test]
    fn defaults_apply() {
        let c = WorkerConfig::from_raw(&base()).unwrap();
        assert_eq!(c.pollers, 1);
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.policy, Policy::default());
        assert_eq!(c.reconcile_every, None);
    }

    #[test]
    fn the_run_budget_is_on_at_five_per_profile_unless_turned_off() {
        let c = WorkerConfig::from_raw(&base()).unwrap();
        let b = c.budget.unwrap();
        assert_eq!((b.profile, b.account, b.flows), (Some(5), None, Some(900)));
        // Leases outlast the longest run reconcile lets go on.
        assert_eq!(b.lease, Duration::from_secs(6 * 3600 + 600));
        let mut raw = base();
        raw.profile_run_limit = Some(0);
        let b = WorkerConfig::from_raw(&raw).unwrap().budget.unwrap();
        assert_eq!((b.profile, b.flows), (None, Some(900)));
        raw.flow_limit = Some(0);
        assert!(WorkerConfig::from_raw(&raw).unwrap().budget.is_none());
        raw.flow_limit = Some(40);
        raw.profile_run_limit = Some(3);
        raw.account_run_limit = Some(20);
        raw.slot_retry = Some("2s".into());
        let c = WorkerConfig::from_raw(&raw).unwrap();
        assert_eq!(c.policy.slot_retry, Duration::from_secs(2));
        let b = c.budget.unwrap();
        assert_eq!(
            (b.profile, b.account, b.flows),
            (Some(3), Some(20), Some(40))
        );
        raw.account_run_limit = Some(0);
        assert_eq!(
            WorkerConfig::from_raw(&raw)
                .unwrap()
                .budget
                .unwrap()
                .account,
            None
        );
        raw.slot_retry = Some("20m".into());
        let msg = WorkerConfig::from_raw(&raw).unwrap_err().to_string();
        assert!(msg.contains("FLOWPILOT_SLOT_RETRY"), "{msg}");
    }

    #[test]
    fn reconcile_ticker_is_off_unless_a_positive_period_is_given() {
        let mut raw = base();
        raw.reconcile_every = Some("off".into());
        assert_eq!(WorkerConfig::from_raw(&raw).unwrap().reconcile_every, None);
        raw.reconcile_every = Some("1500ms".into());
        assert_eq!(
            WorkerConfig::from_raw(&raw).unwrap().reconcile_every,
            Some(Duration::from_millis(1500))
        );
        let file: RawConfig = toml::from_str("reconcile_every = \"2s\"\n").unwrap();
        let c = WorkerConfig::from_raw(&base().over(file)).unwrap();
        assert_eq!(c.reconcile_every, Some(Duration::from_secs(2)));
        raw.reconcile_every = Some("0s".into());
        let msg = WorkerConfig::from_raw(&raw).unwrap_err().to_string();
        assert!(msg.contains("FLOWPILOT_RECONCILE_EVERY"), "{msg}");
    }

    #[test]
    fn missing_queue_names_what_to_set() {
        let mut raw = base();
        raw.queue_url = None;
        let msg = WorkerConfig::from_raw(&raw).unwrap_err().to_string();
        assert!(msg.contains("FLOWPILOT_QUEUE_URL"), "{msg}");
        assert!(msg.contains("--queue-url"), "{msg}");
    }

    #[test]
    fn flags_and_env_override_file() {
        let file: RawConfig = toml::from_str(
            "queue_url = \"http://file\"\ntable = \"ft\"\npollers = 4\nmetrics_addr = \"off\"\n",
        )
        .unwrap();
        let top = RawConfig {
            queue_url: Some("http://env".into()),
            health_bus: Some("b".into()),
            ..RawConfig::default()
        };
        let c = WorkerConfig::from_raw(&top.over(file)).unwrap();
        assert_eq!(c.queue_url, "http://env");
        assert_eq!(c.table, "ft");
        assert_eq!(c.pollers, 4);
        assert_eq!(c.metrics_addr, None);
    }

    #[test]
    fn deletions_linger_a_second_by_default_and_at_most_ten() {
        assert_eq!(
            WorkerConfig::from_raw(&base()).unwrap().delete_linger,
            Duration::from_secs(1)
        );
        let e = WorkerConfig::from_raw(&RawConfig {
            delete_linger: Some("30s".into()),
            ..base()
        })
        .unwrap_err();
        assert!(e.to_string().contains("FLOWPILOT_DELETE_LINGER"), "{e}");
        let c = WorkerConfig::from_raw(&RawConfig {
            delete_linger: Some("250ms".into()),
            ..base()
        })
        .unwrap();
        assert_eq!(c.delete_linger, Duration::from_millis(250));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("20"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21600)));
        assert_eq!(parse_duration("x"), None);
        let mut raw = base();
        raw.source_budget_wait = Some("90s".into());
        assert_eq!(
            WorkerConfig::from_raw(&raw)
                .unwrap()
                .policy
                .source_budget_wait,
            Duration::from_secs(90)
        );
        for bad in ["0s", "25h"] {
            raw.source_budget_wait = Some(bad.into());
            let msg = WorkerConfig::from_raw(&raw).unwrap_err().to_string();
            assert!(msg.contains("FLOWPILOT_SOURCE_BUDGET_WAIT"), "{msg}");
        }
        raw.source_budget_wait = None;
        raw.shutdown_grace = Some("soon".into());
        assert!(
            WorkerConfig::from_raw(&raw)
                .unwrap_err()
                .to_string()
                .contains("FLOWPILOT_SHUTDOWN_GRACE")
        );
    }
}
