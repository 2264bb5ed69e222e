//! `SpecInput → WorkflowSpec`: defaults, then every check, collecting all problems.
//! Patterns are the AppFlow / Customer Profiles model constraints (wire facts §2.3, §4),
//! checked by hand so the core needs no regex engine.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::input::{SpecError, SpecInput, parse_millis, parse_timestamp};
use super::{
    Connector, ContinuousSpec, DEFAULT_SPLIT_FLOOR_MS, Engine, MAX_RECORD_FAILURES,
    MAX_SPEC_DURATION, MAX_SPLIT_FLOOR_MS, MAX_TARGET_RECORDS_PER_RUN, MIN_SPLIT_FLOOR_MS,
    RetryPolicy, SourceObject, WorkflowSpec,
};
use crate::duration::IsoDuration;
use crate::ids::MANAGED_TAG_KEY;
use crate::plan::{MAX_BATCHES, windows};

pub const DOMAIN_PATTERN: &str = "^[a-zA-Z0-9_-]{1,64}$";
pub const OBJECT_TYPE_PATTERN: &str = "^[a-zA-Z_][a-zA-Z_0-9-]*$ (at most 255 characters)";
pub const PROFILE_PATTERN: &str = "[\\w/!@#+=.-]+ (at most 256 characters)";
pub const KMS_PATTERN: &str = "arn:aws:kms:.*:[0-9]+:.* (20 to 2048 characters)";
pub const TAG_KEY_PATTERN: &str = "^(?!aws:)[a-zA-Z+-=._:/]+$ (1 to 128 characters)";
/// AppFlow allows 50 tags; flowpilot adds its managed tag to every flow.
pub const MAX_USER_TAGS: usize = 49;

impl SpecInput {
    /// Applies defaults (`to` = `now`, batch `P2M`, threshold `P60D`, concurrency 1, 3 retries
    /// from 30 s capped at 15 min, `rate(1hours)`, degraded after 3 failed runs, no record
    /// failures tolerated) and checks every field. The error lists every problem found.
    pub fn validate(self, now: DateTime<Utc>) -> Result<WorkflowSpec, SpecError> {
        let mut p = Problems::default();
        let domain = p.required("domain", self.domain, |v| {
            (is_domain(v))
                .then_some(())
                .ok_or(format!("must match {DOMAIN_PATTERN}"))
        });
        let object_type = p.required("object-type", self.object_type, |v| {
            is_object_type(v)
                .then_some(())
                .ok_or(format!("must match {OBJECT_TYPE_PATTERN}"))
        });
        let connector = p.required("connector", self.connector, |v| {
            Connector::parse(v)
                .map(|_| ())
                .ok_or("allowed: salesforce, marketo, servicenow, zendesk, s3".to_owned())
        });
        let connector = connector.and_then(|c| Connector::parse(&c));
        let connector_profile = p.required("connector-profile", self.connector_profile, |v| {
            is_profile(v)
                .then_some(())
                .ok_or(format!("must match {PROFILE_PATTERN}"))
        });

        let source =
            connector.and_then(|c| p.source(c, self.object, self.s3_bucket, self.s3_prefix));
        let timestamp_field = connector.and_then(|c| p.timestamp_field(c, self.timestamp_field));
        let fields = connector.and_then(|c| p.fields(c, self.fields, timestamp_field.as_ref()));

        let from = p.required("from", self.from, |v| date(v).map(|_| ()));
        let from = from.and_then(|v| parse_timestamp(&v));
        let to = match self.to {
            None => Some(now),
            Some(v) => p
                .check("to", &v, date(&v).map(|_| ()))
                .then(|| parse_timestamp(&v))
                .flatten(),
        };
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            p.push(format!(
                "invalid from `{}`: must be before to `{}`",
                rfc(f),
                rfc(t)
            ));
        }
        let batch_size = p.duration("batch-size", self.batch_size, "P2M", from);
        let bulk_threshold = p.duration("bulk-threshold", self.bulk_threshold, "P60D", from);
        if let (Some(f), Some(t), Some(b), Some(c)) = (from, to, batch_size, connector)
            && f < t
            && !matches!(c, Connector::Zendesk | Connector::S3)
            && windows(f, t, b, MAX_BATCHES).is_none()
        {
            p.push(format!(
                "invalid batch-size `{b}`: [{}, {}) would need more than {MAX_BATCHES} batches; \
                 use a larger batch size",
                rfc(f),
                rfc(t)
            ));
        }

        let concurrency = p.range("concurrency", self.concurrency.unwrap_or(1), 1, 100);
        let max_retries = p.range("max-retries", self.max_retries.unwrap_or(3), 0, 20);
        let base_ms = p.millis(
            "retry-base",
            self.retry_base,
            30_000,
            RetryPolicy::MAX_BASE_MS,
        );
        let cap_ms = p.millis(
            "retry-cap",
            self.retry_cap,
            900_000,
            RetryPolicy::MAX_CAP_MS,
        );
        if let (Some(b), Some(c)) = (base_ms, cap_ms)
            && c < b
        {
            p.push(format!(
                "invalid retry-cap `{c}ms`: must be at least retry-base ({b}ms)"
            ));
        }
        let schedule = self.schedule.unwrap_or_else(|| "rate(1hours)".to_owned());
        p.check("schedule", &schedule, schedule_ok(&schedule));
        let degraded_threshold = p.range(
            "degraded-threshold",
            self.degraded_threshold.unwrap_or(3),
            1,
            100,
        );
        let max_record_failures = p.range(
            "max-record-failures",
            self.max_record_failures.unwrap_or(0),
            0,
            MAX_RECORD_FAILURES,
        );
        let split_floor_ms = p.millis(
            "split-floor",
            self.split_floor,
            DEFAULT_SPLIT_FLOOR_MS,
            MAX_SPLIT_FLOOR_MS,
        );
        if let Some(ms) = split_floor_ms
            && ms < MIN_SPLIT_FLOOR_MS
        {
            p.push(format!(
                "invalid split-floor `{}`: at least {}",
                human_millis(ms),
                human_millis(MIN_SPLIT_FLOOR_MS)
            ));
        }
        let target_records_per_run = match self.target_records_per_run {
            Some(n) if !(1..=MAX_TARGET_RECORDS_PER_RUN).contains(&n) => {
                p.push(format!(
                    "invalid target-records-per-run `{n}`: allowed: 1 to {MAX_TARGET_RECORDS_PER_RUN}"
                ));
                None
            }
            n => n,
        };
        if let Some(k) = &self.kms_arn {
            p.check(
                "kms-arn",
                k,
                is_kms_arn(k)
                    .then_some(())
                    .ok_or(format!("must match {KMS_PATTERN}")),
            );
        }
        let tags = self.tags.unwrap_or_default();
        p.tags(&tags);
        let engine = p.engine(self.engine.as_deref(), connector);

        if !p.0.is_empty() {
            return Err(SpecError { problems: p.0 });
        }
        // Every Option below is Some when no problem was recorded; the `?`-style fallback keeps
        // this panic-free should a check above ever forget to record one.
        let missing = || SpecError::one("internal: spec incomplete after validation");
        Ok(WorkflowSpec {
            domain: domain.ok_or_else(missing)?,
            object_type: object_type.ok_or_else(missing)?,
            connector: connector.ok_or_else(missing)?,
            connector_profile: connector_profile.ok_or_else(missing)?,
            source: source.ok_or_else(missing)?,
            timestamp_field,
            fields: fields.ok_or_else(missing)?,
            from: from.ok_or_else(missing)?,
            to: to.ok_or_else(missing)?,
            batch_size: batch_size.ok_or_else(missing)?,
            bulk_threshold: bulk_threshold.ok_or_else(missing)?,
            concurrency: concurrency.ok_or_else(missing)?,
            retry: RetryPolicy {
                max_retries: max_retries.ok_or_else(missing)?,
                base_ms: base_ms.ok_or_else(missing)?,
                cap_ms: cap_ms.ok_or_else(missing)?,
            },
            continuous: ContinuousSpec {
                schedule,
                auto_rebuild: self.auto_rebuild.unwrap_or(false),
                degraded_threshold: degraded_threshold.ok_or_else(missing)?,
            },
            max_record_failures: max_record_failures.ok_or_else(missing)?,
            split_floor_ms: split_floor_ms.ok_or_else(missing)?,
            target_records_per_run,
            kms_arn: self.kms_arn,
            tags,
            engine: engine.ok_or_else(missing)?,
        })
    }
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, p: String) {
        self.0.push(p);
    }

    /// Records ``invalid {field} `{value}`: {why}`` on error; returns whether it was fine.
    fn check(&mut self, field: &str, value: &str, r: Result<(), String>) -> bool {
        match r {
            Ok(()) => true,
            Err(why) => {
                self.push(format!("invalid {field} `{value}`: {why}"));
                false
            }
        }
    }

    fn required(
        &mut self,
        field: &str,
        value: Option<String>,
        ok: impl Fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let Some(v) = value else {
            self.push(format!(
                "missing {field}: pass --{field} or set `{}` in the spec file",
                field.replace('-', "_")
            ));
            return None;
        };
        self.check(field, &v, ok(&v)).then_some(v)
    }

    /// `flowpilot` (default) or `managed`, which only the connectors CreateIntegrationWorkflow
    /// accepts can use.
    fn engine(&mut self, v: Option<&str>, connector: Option<Connector>) -> Option<Engine> {
        let v = v.unwrap_or("flowpilot");
        let engine = Engine::parse(v);
        let ok = engine
            .map(|_| ())
            .ok_or("allowed: flowpilot, managed".to_owned());
        if !self.check("engine", v, ok) {
            return None;
        }
        if let (Some(Engine::Managed), Some(c)) = (engine, connector)
            && c.managed_source_type().is_none()
        {
            self.push(format!(
                "invalid engine `managed` for connector `{}`: Customer Profiles' managed \
                 import (CreateIntegrationWorkflow) supports salesforce, marketo and servicenow \
                 only; use --engine flowpilot",
                c.as_str()
            ));
            return None;
        }
        engine
    }

    fn range(&mut self, field: &str, v: u32, lo: u32, hi: u32) -> Option<u32> {
        let r = (lo..=hi)
            .contains(&v)
            .then_some(())
            .ok_or(format!("allowed: {lo} to {hi}"));
        self.check(field, &v.to_string(), r).then_some(v)
    }

    /// A positive ISO-8601 duration of at most [`MAX_SPEC_DURATION`]. The planner adds
    /// durations to `from` with calendar arithmetic, so that is what is bounded (unchecked
    /// without a valid `from`, which is then a problem of its own).
    fn duration(
        &mut self,
        field: &str,
        v: Option<String>,
        default: &str,
        from: Option<DateTime<Utc>>,
    ) -> Option<IsoDuration> {
        let v = v.unwrap_or_else(|| default.to_owned());
        let parsed = v.parse::<IsoDuration>().map_err(|_| {
            "must be a positive ISO-8601 duration such as P2M, P14D, P2W, P1Y or PT12H".to_owned()
        });
        let r = parsed.clone().and_then(|d| match from {
            Some(f) if !ends_by(d, MAX_SPEC_DURATION, f) => {
                Err(format!("at most {MAX_SPEC_DURATION}"))
            }
            _ => Ok(()),
        });
        self.check(field, &v, r).then(|| parsed.ok()).flatten()
    }

    fn millis(&mut self, field: &str, v: Option<String>, default: u64, max: u64) -> Option<u64> {
        let Some(v) = v else { return Some(default) };
        let parsed = parse_millis(&v);
        let r = match parsed {
            None => Err("use a positive number with a unit: 500ms, 30s, 15m, 1h".to_owned()),
            Some(ms) if ms > max => Err(format!("at most {}", human_millis(max))),
            Some(_) => Ok(()),
        };
        self.check(field, &v, r).then_some(parsed).flatten()
    }

    fn source(
        &mut self,
        c: Connector,
        object: Option<String>,
        bucket: Option<String>,
        prefix: Option<String>,
    ) -> Option<SourceObject> {
        if c == Connector::S3 {
            if let Some(o) = object {
                self.push(format!("invalid object `{o}`: s3 sources take --s3-bucket and --s3-prefix, not --object"));
            }
            let Some(b) = bucket else {
                self.push(
                    "missing s3-bucket: the s3 connector needs --s3-bucket (3 to 63 characters)"
                        .to_owned(),
                );
                return None;
            };
            let ok = (3..=63).contains(&b.len())
                && b.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-'
                });
            let r = ok
                .then_some(())
                .ok_or("must be 3 to 63 lowercase letters, digits, '.' or '-'".to_owned());
            self.check("s3-bucket", &b, r).then_some(SourceObject::S3 {
                bucket: b,
                prefix: prefix.filter(|p| !p.is_empty()),
            })
        } else {
            for (flag, v) in [("s3-bucket", bucket), ("s3-prefix", prefix)] {
                if let Some(v) = v {
                    self.push(format!(
                        "invalid {flag} `{v}`: only the s3 connector reads from a bucket"
                    ));
                }
            }
            let Some(o) = object else {
                self.push(format!(
                    "missing object: the {} connector needs --object (e.g. Account)",
                    c.as_str()
                ));
                return None;
            };
            let ok = !o.trim().is_empty() && o.len() <= 512;
            self.check(
                "object",
                &o,
                ok.then_some(())
                    .ok_or("must be 1 to 512 characters".to_owned()),
            )
            .then_some(SourceObject::Object { name: o })
        }
    }

    fn timestamp_field(&mut self, c: Connector, v: Option<String>) -> Option<String> {
        match (c, v) {
            (Connector::S3, Some(v)) => {
                self.push(format!(
                    "invalid timestamp-field `{v}`: s3 sources have no timestamp filter"
                ));
                None
            }
            (_, Some(v)) => {
                let ok = !v.trim().is_empty() && v.len() <= 256;
                self.check(
                    "timestamp-field",
                    &v,
                    ok.then_some(())
                        .ok_or("must be 1 to 256 characters".to_owned()),
                )
                .then_some(v)
            }
            (c, None) => c.default_timestamp_field().map(str::to_owned),
        }
    }

    /// Defaults to `[id field, timestamp field]`; the timestamp field is always projected
    /// because the window filter and incremental pulls read it.
    fn fields(
        &mut self,
        c: Connector,
        v: Option<Vec<String>>,
        ts: Option<&String>,
    ) -> Option<Vec<String>> {
        let mut fields = v.unwrap_or_else(|| vec![c.default_id_field().to_owned()]);
        let mut ok = !fields.is_empty();
        for f in &fields {
            if f.trim().is_empty() || f.len() > 256 {
                self.push(format!(
                    "invalid fields entry `{f}`: field names are 1 to 256 characters"
                ));
                ok = false;
            }
        }
        if fields.is_empty() {
            self.push(
                "invalid fields ``: list at least one field, e.g. --fields Id,Name".to_owned(),
            );
        }
        if let Some(ts) = ts
            && !fields.contains(ts)
        {
            fields.push(ts.clone());
        }
        let mut seen = std::collections::BTreeSet::new();
        fields.retain(|f| seen.insert(f.clone()));
        ok.then_some(fields)
    }

    fn tags(&mut self, tags: &BTreeMap<String, String>) {
        if tags.len() > MAX_USER_TAGS {
            self.push(format!(
                "invalid tags: {} given, at most {MAX_USER_TAGS} allowed (AppFlow allows 50 and flowpilot adds `{MANAGED_TAG_KEY}`)",
                tags.len()
            ));
        }
        for (k, v) in tags {
            if k == MANAGED_TAG_KEY {
                self.push(format!("invalid tag key `{k}`: reserved for flowpilot"));
            } else if !is_tag_key(k) {
                self.push(format!(
                    "invalid tag key `{k}`: must match {TAG_KEY_PATTERN}"
                ));
            }
            if v.len() > 256 {
                self.push(format!(
                    "invalid tag value for `{k}`: at most 256 characters"
                ));
            }
        }
    }
}

fn date(v: &str) -> Result<DateTime<Utc>, String> {
    parse_timestamp(v).ok_or(
        "use a date like 2024-01-01 (midnight UTC) or RFC 3339 like 2024-01-01T00:00:00Z"
            .to_owned(),
    )
}

fn rfc(t: DateTime<Utc>) -> String {
    crate::plan::rfc3339(t)
}

fn is_domain(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_object_type(v: &str) -> bool {
    let mut bytes = v.bytes();
    v.len() <= 255
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `[\w/!@#+=.-]+`; `\w` is taken as ASCII word characters.
fn is_profile(v: &str) -> bool {
    (1..=256).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_/!@#+=.-".contains(&b))
}

/// `arn:aws:kms:.*:[0-9]+:.*`: some `:<digits>:` must follow the prefix.
fn is_kms_arn(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("arn:aws:kms:") else {
        return false;
    };
    (20..=2048).contains(&v.len())
        && rest
            .split(':')
            .skip(1)
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| !w[0].is_empty() && w[0].bytes().all(|b| b.is_ascii_digit()))
}

/// `^(?!aws:)[a-zA-Z+-=._:/]+$`. In that class `+-=` is the range U+002B..U+003D, which
/// also admits `,`, digits, `;` and `<`: kept as AWS wrote it so we accept what AppFlow does.
fn is_tag_key(k: &str) -> bool {
    (1..=128).contains(&k.len())
        && !k.starts_with("aws:")
        && k.bytes()
            .all(|b| b.is_ascii_alphabetic() || (b'+'..=b'=').contains(&b) || b"._:/".contains(&b))
}

/// Whether `from + d` comes no later than `from + max`.
fn ends_by(d: IsoDuration, max: IsoDuration, from: DateTime<Utc>) -> bool {
    match (d.add_to(from, 1), max.add_to(from, 1)) {
        (Some(end), Some(limit)) => end <= limit,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// `3600000` → `1h`: the largest unit that divides it exactly, as `parse_millis` reads it.
fn human_millis(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// `rate(N unit)`: AppFlow writes `rate(1hours)`; a space and singular units are accepted too.
fn schedule_ok(s: &str) -> Result<(), String> {
    let why = "use rate(<N><unit>) with unit minutes, hours or days, e.g. rate(1hours) or rate(30minutes)";
    let inner = s
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or(why)?;
    let split = inner.find(|c: char| !c.is_ascii_digit()).ok_or(why)?;
    let (n, unit) = inner.split_at(split);
    let n: u32 = n.parse().map_err(|_| why)?;
    let unit_ok = matches!(
        unit.trim_start(),
        "minute" | "minutes" | "hour" | "hours" | "day" | "days"
    );
    (n > 0 && unit_ok).then_some(()).ok_or(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::{base_input, now};

    fn problems(edit: impl FnOnce(&mut SpecInput)) -> Vec<String> {
        let mut i = base_input();
        edit(&mut i);
        i.validate(now())
            .err()
            .map(|e| e.problems)
            .unwrap_or_default()
    }

    #[test]
    fn engine_defaults_to_flowpilot_and_managed_is_offered_where_the_api_supports_it() {
        let spec = base_input().validate(now()).unwrap();
        assert_eq!(spec.engine, Engine::Flowpilot);
        for c in ["salesforce", "marketo", "servicenow"] {
            let mut i = base_input();
            i.connector = Some(c.into());
            i.engine = Some("managed".into());
            assert_eq!(i.validate(now()).unwrap().engine, Engine::Managed, "{c}");
        }
        let p = problems(|i| {
            i.connector = Some("zendesk".into());
            i.engine = Some("managed".into());
        });
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("invalid engine `managed` for connector `zendesk`"),
            "{p:?}"
        );
        assert!(p[0].contains("--engine flowpilot"), "{p:?}");
        let p = problems(|i| i.engine = Some("aws".into()));
        assert_eq!(
            p,
            vec!["invalid engine `aws`: allowed: flowpilot, managed".to_owned()]
        );
    }

    #[test]
    fn the_default_engine_is_not_written_and_specs_without_it_read_as_flowpilot() {
        let spec = base_input().validate(now()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("engine").is_none());
        let mut managed = base_input();
        managed.engine = Some("managed".into());
        let json = serde_json::to_value(managed.validate(now()).unwrap()).unwrap();
        assert_eq!(json["engine"], "managed");
    }

    #[test]
    fn defaults_are_applied() {
        let s = base_input().validate(now()).unwrap();
        assert_eq!(s.to, now());
        assert_eq!(s.batch_size.to_string(), "P2M");
        assert_eq!(s.bulk_threshold.to_string(), "P60D");
        assert_eq!(s.concurrency, 1);
        assert_eq!(
            s.retry,
            RetryPolicy {
                max_retries: 3,
                base_ms: 30_000,
                cap_ms: 900_000
            }
        );
        assert_eq!(s.continuous.schedule, "rate(1hours)");
        assert_eq!(s.continuous.degraded_threshold, 3);
        assert!(!s.continuous.auto_rebuild);
        assert_eq!(s.max_record_failures, 0);
        assert_eq!(s.split_floor_ms, 3_600_000);
        assert_eq!(s.timestamp_field.as_deref(), Some("LastModifiedDate"));
        assert_eq!(s.fields, ["Id", "LastModifiedDate"]);
    }

    #[test]
    fn bad_domain_names_field_value_and_pattern() {
        let p = problems(|i| i.domain = Some("bad name!".into()));
        assert_eq!(
            p,
            ["invalid domain `bad name!`: must match ^[a-zA-Z0-9_-]{1,64}$"]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let p = problems(|i| {
            i.domain = None;
            i.object_type = Some("1abc".into());
            i.connector = Some("hubspot".into());
            i.concurrency = Some(0);
            i.batch_size = Some("P".into());
            i.schedule = Some("every hour".into());
        });
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p[0].starts_with("missing domain"));
        assert!(
            p.iter()
                .any(|m| m.contains("salesforce, marketo, servicenow, zendesk, s3"))
        );
    }

    #[test]
    fn each_rule_rejects_its_bad_value() {
        type Edit = Box<dyn Fn(&mut SpecInput)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "object-type",
                Box::new(|i| i.object_type = Some("a".repeat(256))),
            ),
            (
                "connector-profile",
                Box::new(|i| i.connector_profile = Some("sf prod".into())),
            ),
            ("from", Box::new(|i| i.from = Some("01/01/2024".into()))),
            ("from", Box::new(|i| i.to = Some("2023-12-31".into()))),
            ("concurrency", Box::new(|i| i.concurrency = Some(101))),
            ("max-retries", Box::new(|i| i.max_retries = Some(21))),
            ("retry-base", Box::new(|i| i.retry_base = Some("30".into()))),
            ("retry-cap", Box::new(|i| i.retry_cap = Some("1s".into()))),
            (
                "retry-base",
                Box::new(|i| i.retry_base = Some("61m".into())),
            ),
            (
                "retry-cap",
                Box::new(|i| i.retry_cap = Some("1000000000000s".into())),
            ),
            (
                "batch-size",
                Box::new(|i| i.batch_size = Some("P100Y1D".into())),
            ),
            (
                "bulk-threshold",
                Box::new(|i| i.bulk_threshold = Some("P36525DT1S".into())),
            ),
            (
                "degraded-threshold",
                Box::new(|i| i.degraded_threshold = Some(0)),
            ),
            (
                "max-record-failures",
                Box::new(|i| i.max_record_failures = Some(MAX_RECORD_FAILURES + 1)),
            ),
            (
                "split-floor",
                Box::new(|i| i.split_floor = Some("59s".into())),
            ),
            (
                "split-floor",
                Box::new(|i| i.split_floor = Some("721h".into())),
            ),
            (
                "split-floor",
                Box::new(|i| i.split_floor = Some("1d".into())),
            ),
            (
                "target-records-per-run",
                Box::new(|i| i.target_records_per_run = Some(0)),
            ),
            (
                "target-records-per-run",
                Box::new(|i| i.target_records_per_run = Some(MAX_TARGET_RECORDS_PER_RUN + 1)),
            ),
            (
                "kms-arn",
                Box::new(|i| i.kms_arn = Some("arn:aws:kms:us-east-1:abc:key/x".into())),
            ),
            (
                "tag key",
                Box::new(|i| i.tags = Some([("aws:x".into(), "v".into())].into())),
            ),
            (
                "tag key",
                Box::new(|i| i.tags = Some([("a b".into(), "v".into())].into())),
            ),
            (
                "tags",
                Box::new(|i| {
                    i.tags = Some((0..50).map(|n| (format!("k{n}"), "v".into())).collect())
                }),
            ),
            (
                "batch-size",
                Box::new(|i| i.batch_size = Some("PT5M".into())),
            ),
            ("object", Box::new(|i| i.object = None)),
            ("s3-bucket", Box::new(|i| i.s3_bucket = Some("b".into()))),
            (
                "schedule",
                Box::new(|i| i.schedule = Some("rate(0hours)".into())),
            ),
        ];
        for (field, edit) in cases {
            let p = problems(|i| edit(i));
            assert!(p.len() == 1 && p[0].contains(field), "{field}: {p:?}");
        }
    }

    #[test]
    fn good_values_pass() {
        let ok = problems(|i| {
            i.kms_arn = Some("arn:aws:kms:us-east-1:111122223333:key/abcd".into());
            i.tags = Some(
                [
                    ("team".into(), "crm".into()),
                    ("cost-center/42".into(), "x".into()),
                ]
                .into(),
            );
            i.schedule = Some("rate(30minutes)".into());
            i.retry_base = Some("500ms".into());
            i.connector_profile = Some("sf/prod@eu+1=x.y-z".into());
        });
        assert_eq!(ok, Vec::<String>::new());
    }

    #[test]
    fn durations_are_bounded_and_the_maxima_are_named() {
        let p = problems(|i| {
            i.retry_base = Some("2h".into());
            i.retry_cap = Some("18446744073709551615ms".into());
            i.batch_size = Some("P101Y".into());
            i.bulk_threshold = Some("P99999999M".into());
        });
        assert_eq!(
            p,
            [
                "invalid batch-size `P101Y`: at most P100Y",
                "invalid bulk-threshold `P99999999M`: at most P100Y",
                "invalid retry-base `2h`: at most 1h",
                "invalid retry-cap `18446744073709551615ms`: at most 24h",
            ]
        );
        // Every maximum itself is allowed.
        let at_max = problems(|i| {
            i.from = Some("0001-01-01".into());
            i.to = Some("9999-12-31".into());
            i.retry_base = Some("1h".into());
            i.retry_cap = Some("24h".into());
            i.max_retries = Some(20);
            i.concurrency = Some(100);
            i.degraded_threshold = Some(100);
            i.max_record_failures = Some(MAX_RECORD_FAILURES);
            i.batch_size = Some("P100Y".into());
            i.bulk_threshold = Some("P100Y".into());
        });
        assert_eq!(at_max, Vec::<String>::new());
    }

    #[test]
    fn s3_needs_a_bucket_and_no_timestamp_field() {
        let p = problems(|i| {
            i.connector = Some("s3".into());
        });
        assert_eq!(p.len(), 2, "{p:?}"); // --object given, no bucket
        let mut i = base_input();
        i.connector = Some("s3".into());
        i.object = None;
        i.s3_bucket = Some("my-bucket".into());
        let s = i.validate(now()).unwrap();
        assert_eq!(s.timestamp_field, None);
        assert_eq!(s.fields, ["id"]);
    }
}
