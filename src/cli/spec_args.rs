//! Workflow spec flags shared by `workflow plan` and `workflow create`: a TOML file
//! (`--spec`) and/or flags; flags override the file's values.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use flowpilot_core::spec::{SpecInput, WorkflowSpec};

use crate::cli::UsageError;

#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Workflow spec")]
pub struct SpecArgs {
    /// A TOML spec file with the same keys as these flags (`connector_profile = "sf"`,
    /// `from = 2024-01-01`, `[tags]` table…); flags override its values.
    #[arg(long, value_name = "FILE.toml")]
    pub spec: Option<PathBuf>,

    /// Source connector: salesforce, marketo, servicenow, zendesk or s3.
    #[arg(long)]
    pub connector: Option<String>,

    /// AppFlow connector profile (connection) name; pattern [\w/!@#+=.-]+, max 256.
    #[arg(long, value_name = "NAME")]
    pub connector_profile: Option<String>,

    /// Source object, e.g. Account (required for every connector but s3).
    #[arg(long)]
    pub object: Option<String>,

    /// S3 bucket to read (s3 connector only; 3-63 characters).
    #[arg(long, value_name = "BUCKET")]
    pub s3_bucket: Option<String>,

    /// Key prefix inside --s3-bucket (s3 connector only).
    #[arg(long, value_name = "PREFIX")]
    pub s3_prefix: Option<String>,

    /// Record modification-time field used for windows and incremental pulls. Default:
    /// salesforce LastModifiedDate, servicenow sys_updated_on, marketo updatedAt,
    /// zendesk updated_at; not allowed for s3.
    #[arg(long, value_name = "FIELD")]
    pub timestamp_field: Option<String>,

    /// Comma-separated source fields mapped 1:1 into the object type. Default: the id field
    /// (Id, sys_id or id) plus the timestamp field, which is always included.
    #[arg(long, value_delimiter = ',', value_name = "A,B,..")]
    pub fields: Option<Vec<String>>,

    /// Customer Profiles domain; ^[a-zA-Z0-9_-]{1,64}$.
    #[arg(long)]
    pub domain: Option<String>,

    /// Customer Profiles object type; ^[a-zA-Z_][a-zA-Z_0-9-]*$, max 255.
    #[arg(long, value_name = "NAME")]
    pub object_type: Option<String>,

    /// Start of the historical range (inclusive): 2024-01-01 (midnight UTC) or RFC 3339.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,

    /// End of the historical range (exclusive), where the continuous integration takes over.
    /// Default: now.
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,

    /// Window per batch, ISO-8601 duration (P2M, P14D, P2W, P1Y, PT12H), at most P100Y.
    /// Default: P2M.
    #[arg(long, value_name = "DURATION")]
    pub batch_size: Option<String>,

    /// Ranges not longer than this skip the bulk phase. ISO-8601 duration, at most P100Y.
    /// Default: P60D.
    #[arg(long, value_name = "DURATION")]
    pub bulk_threshold: Option<String>,

    /// Max batches running (or waiting to retry) at once, 1-100. Default: 1.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,

    /// Retries of a batch after a transient failure, 0-20. Default: 3.
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,

    /// First retry delay (500ms, 30s, 15m, 1h), at most 1h; doubles per retry, full jitter.
    /// Default: 30s.
    #[arg(long, value_name = "DELAY")]
    pub retry_base: Option<String>,

    /// Longest retry delay (500ms, 30s, 15m, 1h), at most 24h. Default: 15m.
    #[arg(long, value_name = "DELAY")]
    pub retry_cap: Option<String>,

    /// Continuous integration schedule, rate(<N><minutes|hours|days>). Default: rate(1hours).
    #[arg(long, value_name = "EXPR")]
    pub schedule: Option<String>,

    /// Rebuild the continuous integration automatically when it degrades. Default: off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub auto_rebuild: Option<bool>,

    /// Consecutive failed runs that mark the integration degraded, 1-100. Default: 3.
    #[arg(long, value_name = "N")]
    pub degraded_threshold: Option<u32>,

    /// Records a batch run may fail to write (AppFlow record-level failures) and still count
    /// as succeeded, marked and reported; beyond it the batch fails with a redrive command.
    /// 0-1000000. Default: 0.
    #[arg(long, value_name = "N")]
    pub max_record_failures: Option<u32>,

    /// Shortest window a split may produce (1m to 720h, e.g. 30m, 1h). A batch run that fails
    /// for size or time (AppFlow's run limits, a Salesforce query time-out, too many records)
    /// is split in two, recursively, down to this; at the floor it is retried as usual.
    /// Default: 1h.
    #[arg(long, value_name = "DURATION")]
    pub split_floor: Option<String>,

    /// Records a batch run should carry, 1-100000000. Once three windows have completed, the
    /// windows not started yet are re-planned to this many records each, from the record
    /// density the completed ones observed (never shorter than the split floor). Default: off.
    #[arg(long, value_name = "N")]
    pub target_records_per_run: Option<u64>,

    /// The Customer Profiles domain's customer managed KMS key, used for every flow
    /// (arn:aws:kms:<region>:<account>:key/...). Required to create a workflow: the continuous
    /// integration cannot be linked without it.
    #[arg(long, value_name = "ARN", env = "FLOWPILOT_DOMAIN_KMS_KEY_ARN")]
    pub kms_arn: Option<String>,

    /// Who runs the batches: flowpilot (default; one flow per batch, driven from the work
    /// queue) or managed (Customer Profiles' CreateIntegrationWorkflow runs flowpilot's batches
    /// with the AppFlowExecutionRole; salesforce, marketo and servicenow only).
    #[arg(long, value_name = "flowpilot|managed")]
    pub engine: Option<String>,

    /// Tag for every flow, KEY=VALUE (repeatable; at most 49; keys may not start with aws:).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
}

impl SpecArgs {
    /// The spec file (if any) overlaid with the flags, not yet validated.
    pub fn to_input(&self) -> Result<SpecInput, UsageError> {
        let file = match &self.spec {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    UsageError(format!("cannot read spec file {}: {e}", path.display()))
                })?;
                SpecInput::from_toml(&text)
                    .map_err(|e| UsageError(format!("{}: {e}", path.display())))?
            }
            None => SpecInput::default(),
        };
        let mut tags = std::collections::BTreeMap::new();
        for tag in &self.tags {
            let Some((k, v)) = tag.split_once('=') else {
                return Err(UsageError(format!(
                    "invalid tag `{tag}`: use --tag KEY=VALUE"
                )));
            };
            tags.insert(k.to_owned(), v.to_owned());
        }
        let flags = SpecInput {
            domain: self.domain.clone(),
            object_type: self.object_type.clone(),
            connector: self.connector.clone(),
            connector_profile: self.connector_profile.clone(),
            object: self.object.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_prefix: self.s3_prefix.clone(),
            timestamp_field: self.timestamp_field.clone(),
            fields: self.fields.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            batch_size: self.batch_size.clone(),
            bulk_threshold: self.bulk_threshold.clone(),
            concurrency: self.concurrency,
            max_retries: self.max_retries,
            retry_base: self.retry_base.clone(),
            retry_cap: self.retry_cap.clone(),
            schedule: self.schedule.clone(),
            auto_rebuild: self.auto_rebuild,
            degraded_threshold: self.degraded_threshold,
            max_record_failures: self.max_record_failures,
            split_floor: self.split_floor.clone(),
            target_records_per_run: self.target_records_per_run,
            kms_arn: self.kms_arn.clone(),
            tags: (!tags.is_empty()).then_some(tags),
            engine: self.engine.clone(),
        };
        Ok(file.overlay(flags))
    }

    /// The validated spec (`to` defaults to `now`).
    pub fn resolve(&self, now: DateTime<Utc>) -> Result<WorkflowSpec, UsageError> {
        self.to_input()?
            .validate(now)
            .map_err(|e| UsageError(e.to_string()))
    }
}
