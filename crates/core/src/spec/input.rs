//! The raw spec as an operator writes it (TOML file or CLI flags), before validation.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// Every field optional; the same keys in a TOML file and (with `-` for `_`) as CLI flags.
///
/// ```toml
/// domain = "acme"
/// object_type = "Account"
/// connector = "salesforce"
/// connector_profile = "sf-prod"
/// object = "Account"
/// from = 2024-01-01            # a TOML date, or a string: "2024-01-01T00:00:00Z"
/// batch_size = "P2M"
/// retry_base = "30s"
/// [tags]
/// team = "crm"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecInput {
    pub domain: Option<String>,
    pub object_type: Option<String>,
    /// `salesforce | marketo | servicenow | zendesk | s3`
    pub connector: Option<String>,
    pub connector_profile: Option<String>,
    /// Source object (not S3).
    pub object: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub timestamp_field: Option<String>,
    pub fields: Option<Vec<String>>,
    /// `2024-01-01` (midnight UTC) or RFC 3339.
    #[serde(default, deserialize_with = "date_text")]
    pub from: Option<String>,
    #[serde(default, deserialize_with = "date_text")]
    pub to: Option<String>,
    /// ISO-8601 duration.
    pub batch_size: Option<String>,
    pub bulk_threshold: Option<String>,
    pub concurrency: Option<u32>,
    pub max_retries: Option<u32>,
    /// `500ms`, `30s`, `15m`, `1h`.
    pub retry_base: Option<String>,
    pub retry_cap: Option<String>,
    pub schedule: Option<String>,
    pub auto_rebuild: Option<bool>,
    pub degraded_threshold: Option<u32>,
    /// Record-level failures a batch run may report and still succeed.
    pub max_record_failures: Option<u32>,
    /// Shortest window a split may produce (`30m`, `1h`): a run that fails for size or time
    /// is split in two down to this.
    pub split_floor: Option<String>,
    /// Records a batch run should carry: later windows are sized from the density the first
    /// completed ones observed.
    pub target_records_per_run: Option<u64>,
    pub kms_arn: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    /// `flowpilot | managed` (managed: Salesforce, Marketo, ServiceNow only).
    pub engine: Option<String>,
}

impl SpecInput {
    /// Parses a TOML spec file's text.
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        toml::from_str(text).map_err(|e| SpecError::one(format!("invalid spec file: {e}")))
    }

    /// `self` with every value set in `over` replacing its own (flags over a file).
    pub fn overlay(self, over: SpecInput) -> SpecInput {
        let mut tags = self.tags;
        if let Some(extra) = over.tags {
            tags.get_or_insert_with(BTreeMap::new).extend(extra);
        }
        SpecInput {
            domain: over.domain.or(self.domain),
            object_type: over.object_type.or(self.object_type),
            connector: over.connector.or(self.connector),
            connector_profile: over.connector_profile.or(self.connector_profile),
            object: over.object.or(self.object),
            s3_bucket: over.s3_bucket.or(self.s3_bucket),
            s3_prefix: over.s3_prefix.or(self.s3_prefix),
            timestamp_field: over.timestamp_field.or(self.timestamp_field),
            fields: over.fields.or(self.fields),
            from: over.from.or(self.from),
            to: over.to.or(self.to),
            batch_size: over.batch_size.or(self.batch_size),
            bulk_threshold: over.bulk_threshold.or(self.bulk_threshold),
            concurrency: over.concurrency.or(self.concurrency),
            max_retries: over.max_retries.or(self.max_retries),
            retry_base: over.retry_base.or(self.retry_base),
            retry_cap: over.retry_cap.or(self.retry_cap),
            schedule: over.schedule.or(self.schedule),
            auto_rebuild: over.auto_rebuild.or(self.auto_rebuild),
            degraded_threshold: over.degraded_threshold.or(self.degraded_threshold),
            max_record_failures: over.max_record_failures.or(self.max_record_failures),
            split_floor: over.split_floor.or(self.split_floor),
            target_records_per_run: over.target_records_per_run.or(self.target_records_per_run),
            kms_arn: over.kms_arn.or(self.kms_arn),
            tags,
            engine: over.engine.or(self.engine),
        }
    }
}

/// Every problem found in a spec, one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub problems: Vec<String>,
}

impl SpecError {
    pub fn one(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => f.write_str(one),
            many => {
                write!(f, "{} problems in the workflow spec:", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// `2024-01-01` (midnight UTC) or RFC 3339 (any offset, converted to UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `500ms`, `30s`, `15m`, `2h` → milliseconds (None if malformed or zero).
pub fn parse_millis(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor).filter(|&ms| ms > 0)
}

/// TOML writes dates unquoted (`from = 2024-01-01`); accept those as well as strings.
fn date_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum DateText {
        Text(String),
        Toml(toml::value::Datetime),
    }
    Ok(Option::<DateText>::deserialize(d)?.map(|v| match v {
        DateText::Text(s) => s,
        DateText::Toml(dt) => dt.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_dates_may_be_bare_or_quoted() {
        let s = SpecInput::from_toml("from = 2024-01-01\nto = \"2025-01-01T00:00:00Z\"\n").unwrap();
        assert_eq!(s.from.as_deref(), Some("2024-01-01"));
        assert_eq!(s.to.as_deref(), Some("2025-01-01T00:00:00Z"));
        let s = SpecInput::from_toml("from = 2024-01-01T10:00:00Z").unwrap();
        assert_eq!(
            parse_timestamp(s.from.as_deref().unwrap())
                .unwrap()
                .to_rfc3339(),
            "2024-01-01T10:00:00+00:00"
        );
    }

    #[test]
    fn unknown_keys_in_a_file_are_rejected() {
        let e = SpecInput::from_toml("domian = \"acme\"").unwrap_err();
        assert!(e.to_string().contains("domian"), "{e}");
    }

    #[test]
    fn flags_override_the_file_and_tags_merge() {
        let file =
            SpecInput::from_toml("domain = \"a\"\nconcurrency = 2\n[tags]\nx = \"1\"\ny = \"1\"")
                .unwrap();
        let flags = SpecInput {
            domain: Some("b".into()),
            tags: Some([("y".to_owned(), "2".to_owned())].into()),
            ..Default::default()
        };
        let merged = file.overlay(flags);
        assert_eq!(merged.domain.as_deref(), Some("b"));
        assert_eq!(merged.concurrency, Some(2));
        assert_eq!(
            merged.tags.unwrap(),
            [("x".into(), "1".into()), ("y".into(), "2".into())].into()
        );
    }

    #[test]
    fn timestamps_and_millis() {
        assert_eq!(
            parse_timestamp("2024-01-01").unwrap().to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_timestamp("2024-01-01T02:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        for bad in ["2024-13-01", "yesterday", "2024-01-01T00:00:00", ""] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(parse_millis("500ms"), Some(500));
        assert_eq!(parse_millis("30s"), Some(30_000));
        assert_eq!(parse_millis("15m"), Some(900_000));
        assert_eq!(parse_millis("2h"), Some(7_200_000));
        for bad in ["30", "s", "0s", "-1s", "1.5s", "3d", ""] {
            assert_eq!(parse_millis(bad), None, "{bad}");
        }
    }
}
