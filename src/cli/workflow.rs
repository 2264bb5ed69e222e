//! `flowpilot workflow create|status|list|cancel|redrive`: operator commands. They read the
//! state table and send commands straight to the work queue (the same envelope EventBridge
//! delivers), so they need only FLOWPILOT_QUEUE_URL and FLOWPILOT_TABLE.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use flowpilot_core::command::Command;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::{BatchStatus, Workflow, WorkflowStatus};
use serde_json::{Value, json};

use super::UsageError;
use super::spec_args::SpecArgs;
use crate::aws::queue::Queue;
use crate::aws::{self, Clients};
use crate::config::RawConfig;
use crate::metrics::Metrics;
use crate::store::dynamo::DynamoStore;
use crate::store::{Store, StoreError};

/// How often `status --watch` refreshes.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// Width of the text progress bars.
const BAR_WIDTH: usize = 30;

/// Where the state and the queue are.
#[derive(Debug, Clone, clap::Args)]
pub struct ResourceArgs {
    /// Work queue URL (stack output QueueUrl).
    #[arg(long, env = "FLOWPILOT_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// DynamoDB state table (stack output TableName).
    #[arg(long, env = "FLOWPILOT_TABLE")]
    pub table: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Workflow id (1-40 of a-z, 0-9, '-'); generated as wf-<10 hex> when omitted.
    #[arg(long)]
    pub id: Option<String>,
    /// Print `{"workflow_id": ...}` only.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub resources: ResourceArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    pub id: String,
    /// Refresh every 2 s until the workflow is live, failed or cancelled.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON (with --watch: once, when it stops).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub resources: ResourceArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only workflows with this status (pending, backfilling, linking, live, degraded,
    /// rebuilding, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Include failed and cancelled workflows (a full table scan).
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub resources: ResourceArgs,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    pub id: String,
    /// Why (recorded with the command).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
}

/// The state table and the work queue.
pub(crate) struct Ops {
    pub store: DynamoStore,
    pub queue: Queue,
}

impl Ops {
    pub async fn connect(resources: &ResourceArgs) -> anyhow::Result<Self> {
        let raw = RawConfig {
            queue_url: resources.queue_url.clone(),
            table: resources.table.clone(),
            ..RawConfig::default()
        };
        let queue_url = raw.queue_url().map_err(|e| UsageError(e.to_string()))?;
        let table = raw.table().map_err(|e| UsageError(e.to_string()))?;
        let sdk = aws::sdk_config().await;
        let clients = Clients::new(&sdk, &Arc::new(Metrics::default()));
        Ok(Self {
            store: DynamoStore::new(clients.dynamodb.clone(), table),
            queue: Queue::new(clients.sqs, queue_url),
        })
    }

    pub async fn load(&self, id: &str) -> anyhow::Result<Workflow> {
        let id = parse_id(id)?;
        self.store
            .load(&id)
            .await?
            .ok_or_else(|| UsageError(format!("no workflow `{id}` in the state table")).into())
    }

    pub async fn send(&self, cmd: &Command) -> anyhow::Result<String> {
        Ok(self.queue.send_command(cmd, Duration::ZERO).await?)
    }
}

fn parse_id(id: &str) -> Result<WorkflowId, UsageError> {
    WorkflowId::new(id).map_err(|e| UsageError(e.to_string()))
}

/// `wf-` and 10 random lowercase hex digits (40 bits: collisions are caught by `create`).
fn generated_id() -> Result<WorkflowId, UsageError> {
    let n = fastrand::u64(..) & 0xff_ffff_ffff;
    parse_id(&format!("wf-{n:010x}"))
}

pub async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let spec = args.spec.resolve(now)?;
    // Checked here rather than in the spec: `plan` needs no key, but a workflow without one
    // would backfill everything and then fail permanently at PutIntegration.
    if spec.kms_arn.is_none() {
        return Err(UsageError(
            "kms_arn is required to create a workflow: Customer Profiles integrations need the \
             domain's customer managed KMS key. Pass --kms-arn ARN, set kms_arn in the spec \
             file, or set FLOWPILOT_DOMAIN_KMS_KEY_ARN"
                .to_owned(),
        )
        .into());
    }
    let id = match &args.id {
        Some(id) => parse_id(id)?,
        None => generated_id()?,
    };
    if flowpilot_core::ids::is_reserved(&id) {
        return Err(UsageError(format!(
            "workflow id `{id}` ends in -m<digits>, which names the managed engine's flows; \
             pick another --id"
        ))
        .into());
    }
    let ops = Ops::connect(&args.resources).await?;
    let wf = Workflow::new(id.clone(), spec, now);
    match ops.store.create(&wf).await {
        Ok(()) => {}
        // A pending workflow whose start was never sent (e.g. the send failed): send it now.
        Err(StoreError::AlreadyExists(_))
            if ops
                .store
                .load(&id)
                .await?
                .is_some_and(|w| w.status == WorkflowStatus::Pending) => {}
        Err(StoreError::AlreadyExists(_)) => {
            return Err(UsageError(format!(
                "workflow `{id}` already exists and has started: pick another --id, or see \
                 `flowpilot workflow status {id}`"
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    ops.send(&Command::Start {
        workflow_id: id.clone(),
    })
    .await
    .with_context(|| {
        format!(
            "workflow `{id}` is stored but its start command was not sent; run the same \
                 `workflow create --id {id} ...` again to resend it"
        )
    })?;
    if args.json {
        println!("{}", json!({ "workflow_id": id.as_str() }));
        return Ok(ExitCode::SUCCESS);
    }
    let s = &wf.spec;
    println!(
        "Created workflow {id}: {} {} -> Customer Profiles {}/{}, {} to {}",
        s.connector.as_str(),
        source_label(&wf),
        s.domain,
        s.object_type,
        s.from.to_rfc3339(),
        s.to.to_rfc3339(),
    );
    if wf.bulk {
        println!(
            "  bulk phase: {} batch(es), up to {} at a time, then the continuous integration",
            wf.batches.len(),
            s.concurrency
        );
    } else {
        println!(
            "  no bulk phase: the continuous integration starts directly at {}",
            s.from.to_rfc3339()
        );
    }
    println!("Start command sent. A running `flowpilot worker` picks it up.");
    println!("Next: flowpilot workflow status {id} --watch");
    Ok(ExitCode::SUCCESS)
}

fn source_label(wf: &Workflow) -> String {
    match &wf.spec.source {
        flowpilot_core::spec::SourceObject::Object { name } => name.clone(),
        flowpilot_core::spec::SourceObject::S3 { bucket, prefix } => {
            format!("s3://{bucket}/{}", prefix.as_deref().unwrap_or(""))
        }
    }
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let ops = Ops::connect(&args.resources).await?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let wf = ops.load(&args.id).await?;
        let settled = wf.status.is_terminal() || wf.status == WorkflowStatus::Live;
        if !args.watch || settled {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status_json(&wf))?);
            } else {
                print!("{}", status_text(&wf, Utc::now()));
            }
            return Ok(ExitCode::SUCCESS);
        }
        if !args.json {
            if tty {
                // Clear the screen and go home, so the table refreshes in place.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", status_text(&wf, Utc::now()));
            if !tty {
                println!();
            }
            std::io::stdout().flush()?;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// A batch's status as shown: a `retry_wait` that is a pause for the SaaS API allowance reads
/// `paused` in the text view (the JSON keeps the stored status and adds `paused_until`).
fn batch_label(b: &flowpilot_core::model::Batch) -> &'static str {
    if b.paused && b.status == BatchStatus::RetryWait {
        "paused"
    } else if slot_wait(b).is_some() {
        "waiting_slot"
    } else {
        batch_status(b.status)
    }
}

/// The run-slot wait of a batch that is waiting for one now (the record stays while a granted
/// start is under way, until AppFlow answers).
fn slot_wait(b: &flowpilot_core::model::Batch) -> Option<&flowpilot_core::model::SlotWait> {
    b.slot_wait
        .as_ref()
        .filter(|_| b.status == BatchStatus::RetryWait)
}

/// The workflow's longest current wait for a run slot, with its latest count of slots in use.
fn waiting_for_slot(wf: &Workflow) -> Option<(usize, &flowpilot_core::model::SlotWait)> {
    let waits: Vec<_> = wf.batches.iter().filter_map(slot_wait).collect();
    let oldest = waits.iter().min_by_key(|w| w.since)?;
    Some((waits.len(), oldest))
}

fn batch_status(s: BatchStatus) -> &'static str {
    match s {
        BatchStatus::Pending => "pending",
        BatchStatus::Running => "running",
        BatchStatus::RetryWait => "retry_wait",
        BatchStatus::Succeeded => "succeeded",
        BatchStatus::Failed => "failed",
        BatchStatus::Split => "split",
        BatchStatus::Replanned => "replanned",
    }
}

struct Totals {
    /// Batches that run a window (a split batch runs as its halves).
    batches: usize,
    split: usize,
    succeeded: usize,
    running: usize,
    failed: usize,
    pending: usize,
    records: u64,
    /// Records batch runs read but did not write (AppFlow's record-level failures).
    records_failed: u64,
    /// Share of `[from, to)` covered by succeeded batches.
    coverage: f64,
}

fn totals(wf: &Workflow) -> Totals {
    let count = |s: BatchStatus| wf.batches.iter().filter(|b| b.status == s).count();
    let span = (wf.spec.to - wf.spec.from).num_milliseconds().max(1) as f64;
    let covered: i64 = wf
        .batches
        .iter()
        .filter(|b| b.status == BatchStatus::Succeeded)
        .map(|b| (b.window.end - b.window.start).num_milliseconds())
        .sum();
    Totals {
        batches: wf.runnable_batches().count(),
        split: count(BatchStatus::Split),
        succeeded: count(BatchStatus::Succeeded),
        running: count(BatchStatus::Running) + count(BatchStatus::RetryWait),
        failed: count(BatchStatus::Failed),
        pending: count(BatchStatus::Pending),
        records: wf.batches.iter().map(|b| b.records).sum(),
        records_failed: wf.batches.iter().map(|b| b.records_failed()).sum(),
        coverage: (covered as f64 / span).clamp(0.0, 1.0),
    }
}

pub fn status_json(wf: &Workflow) -> Value {
    let t = totals(wf);
    json!({
        "workflow_id": wf.id.as_str(),
        "status": wf.status.as_str(),
        "bulk": wf.bulk,
        "domain": wf.spec.domain,
        "object_type": wf.spec.object_type,
        "connector": wf.spec.connector.as_str(),
        "from": wf.spec.from,
        "to": wf.spec.to,
        "batches": wf.batches.iter().map(|b| json!({
            "index": b.index,
            "start": b.window.start,
            "end": b.window.end,
            "status": batch_status(b.status),
            "attempts": b.attempt,
            "records": b.records,
            "records_failed": b.records_failed(),
            "records_failed_message": b.not_sent.as_ref().and_then(|n| n.message.clone()),
            "budget_waits": b.budget_waits,
            "split_from": b.split_from,
            "split_into": b.split_into,
            "paused_until": (b.paused && b.status == BatchStatus::RetryWait)
                .then_some(b.retry_at)
                .flatten(),
            "slot_wait": slot_wait(b).map(|w| json!({
                "scope": w.scope,
                "in_use": w.in_use,
                "limit": w.limit,
                "since": w.since,
                "denials": w.denials,
                "quota": w.quota,
            })),
            "error": b.last_error.as_ref().map(|e| e.message.clone()),
        })).collect::<Vec<_>>(),
        "split_floor_ms": wf.spec.split_floor_ms,
        "target_records_per_run": wf.spec.target_records_per_run,
        "replan": wf.replan.as_ref().map(|r| json!({
            "at": r.at,
            "from": r.from,
            "window_ms": r.window_ms,
            "windows": r.windows,
            "replaced": r.replaced,
            "observed_records": r.observed_records,
            "observed_ms": r.observed_ms,
        })),
        "totals": {
            "batches": t.batches,
            "split": t.split,
            "succeeded": t.succeeded,
            "running": t.running,
            "failed": t.failed,
            "pending": t.pending,
            "records": t.records,
            "records_failed": t.records_failed,
        },
        "paused_until": wf.paused_until(),
        "waiting_for_slot": waiting_for_slot(wf).map(|(batches, w)| json!({
            "scope": w.scope,
            "in_use": w.in_use,
            "limit": w.limit,
            "since": w.since,
            "batches": batches,
            "quota": w.quota,
        })),
        "live": wf.live.as_ref().map(|l| json!({
            "flow_name": l.flow_name,
            "generation": l.generation,
            "first_execution_from": l.first_execution_from,
            "uri": l.uri,
            "runs_succeeded": l.runs_succeeded,
            "runs_failed": l.runs_failed,
            "records": l.records,
            "records_failed": l.records_failed,
            "records_failed_message": l.not_sent.last().and_then(|n| n.message.clone()),
            "consecutive_failures": l.consecutive_failures,
            "retiring": l.retiring.as_ref().map(|r| json!({
                "since": r.since,
                "in_progress": r.in_progress,
            })),
        })),
        "error": wf.last_error.as_ref().map(|e| e.message.clone()),
        "version": wf.version,
        "updated_at": wf.updated_at,
    })
}

fn bar(fraction: f64) -> String {
    let filled = ((fraction.clamp(0.0, 1.0)) * BAR_WIDTH as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled))
}

fn short(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// The date, and the time of day too where a split put a bound inside a day.
fn instant(t: DateTime<Utc>) -> String {
    if t.time() == chrono::NaiveTime::MIN {
        short(t)
    } else {
        t.format("%Y-%m-%dT%H:%M").to_string()
    }
}

/// Batches by window (a split batch before its halves, which share its start): the halves of
/// a split are appended to the plan, but read best where their window is.
fn in_window_order(wf: &Workflow) -> Vec<&flowpilot_core::model::Batch> {
    let mut rows: Vec<_> = wf.batches.iter().collect();
    rows.sort_by_key(|b| (b.window.start, std::cmp::Reverse(b.window.end), b.index));
    rows
}

pub fn status_text(wf: &Workflow, now: DateTime<Utc>) -> String {
    use std::fmt::Write as _;
    let t = totals(wf);
    let total = t.batches.max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workflow {}  status: {}  ({} {} -> {}/{})",
        wf.id,
        wf.status.as_str(),
        wf.spec.connector.as_str(),
        source_label(wf),
        wf.spec.domain,
        wf.spec.object_type
    );
    let _ = writeln!(
        out,
        "range    {} .. {}   updated {}s ago",
        wf.spec.from.to_rfc3339(),
        wf.spec.to.to_rfc3339(),
        (now - wf.updated_at).num_seconds().max(0)
    );
    if wf.spec.engine == flowpilot_core::spec::Engine::Managed {
        let m = wf.managed.as_ref();
        let _ = writeln!(
            out,
            "engine   managed: Customer Profiles workflow {} (submission {}, {})",
            m.and_then(|m| m.workflow_id.as_deref())
                .unwrap_or("not created yet"),
            m.map_or(0, |m| m.generation),
            m.and_then(|m| m.status.as_deref())
                .unwrap_or("status not read yet")
        );
    }
    if wf.bulk {
        let _ = writeln!(
            out,
            "batches  {} {}/{} succeeded, {} running, {} failed, {} pending{}",
            bar(t.succeeded as f64 / total as f64),
            t.succeeded,
            t.batches,
            t.running,
            t.failed,
            t.pending,
            if t.split > 0 {
                format!(" ({} split in two)", t.split)
            } else {
                String::new()
            }
        );
        let written = if t.records_failed > 0 {
            // AppFlow counts the records a run read, whether or not it could write them all.
            format!("{} processed, {} not sent", t.records, t.records_failed)
        } else {
            format!("{} ingested", t.records)
        };
        let _ = writeln!(
            out,
            "records  {} {written} ({:.0}% of the range done)",
            bar(t.coverage),
            t.coverage * 100.0,
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>5}  {:<10}  {:<10}  {:<10}  {:>8}  {:>10}  {:>8}  error",
            "batch", "start", "end", "status", "attempts", "records", "not sent"
        );
        for b in in_window_order(wf) {
            let _ = writeln!(
                out,
                "{:>5}  {:<10}  {:<10}  {:<10}  {:>8}  {:>10}  {:>8}  {}",
                b.index,
                instant(b.window.start),
                instant(b.window.end),
                batch_label(b),
                b.attempt,
                b.records,
                b.records_failed(),
                b.last_error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("")
            );
        }
        // AppFlow's words about records it did not write, batch by batch.
        for b in &wf.batches {
            if let Some(ns) = &b.not_sent {
                let _ = writeln!(
                    out,
                    "not sent: batch {}: {} of {} records: {}",
                    b.index,
                    ns.records_failed,
                    ns.records_processed,
                    ns.message
                        .as_deref()
                        .unwrap_or("(AppFlow's message not known yet)")
                );
            }
        }
        // Adaptive windows: which window ran as which halves, and why.
        for b in wf.batches.iter().filter(|b| b.status == BatchStatus::Split) {
            let _ = writeln!(
                out,
                "split: batch {} [{}, {}) into batches {}: {}",
                b.index,
                b.window.start.to_rfc3339(),
                b.window.end.to_rfc3339(),
                b.split_into
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" and "),
                b.last_error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("too big or too long for one run")
            );
        }
        if let (Some(r), Some(target)) = (&wf.replan, wf.spec.target_records_per_run) {
            let _ = writeln!(
                out,
                "re-planned: from {}, {} window(s) of {:.1} h for about {target} records per run \
                 (the first completed windows held {} records in {:.1} h); {} planned window(s) replaced",
                r.from.to_rfc3339(),
                r.windows,
                r.window_ms as f64 / 3_600_000.0,
                r.observed_records,
                r.observed_ms as f64 / 3_600_000.0,
                r.replaced
            );
        }
        if let Some((batches, w)) = waiting_for_slot(wf) {
            let usage = if w.quota && w.limit == 0 {
                "AppFlow refused: quota (that limit of flowpilot's is off: nothing to lower)"
                    .to_owned()
            } else if w.quota {
                format!(
                    "AppFlow refused: quota; effective limit lowered to {} ({} in use)",
                    w.limit, w.in_use
                )
            } else {
                format!("{}/{} in use", w.in_use, w.limit)
            };
            let _ = writeln!(
                out,
                "waiting for a run slot on {}: {usage} ({batches} batch(es), since {}); \
                 the shared run budget serves the longest waiting batch first",
                w.scope,
                w.since.to_rfc3339()
            );
        }
        if let Some(until) = wf.paused_until() {
            let _ = writeln!(
                out,
                "paused until {}: the SaaS API allowance of connector profile `{}` is spent; \
                 the workflow resumes by itself",
                until.to_rfc3339(),
                wf.spec.connector_profile
            );
        }
    }
    if let Some(live) = &wf.live {
        let _ = writeln!(
            out,
            "\nintegration {} (generation {}), first execution from {}, {} ok / {} failed runs, {} records{}",
            live.flow_name,
            live.generation,
            live.first_execution_from.to_rfc3339(),
            live.runs_succeeded,
            live.runs_failed,
            live.records,
            live.uri
                .as_deref()
                .map(|u| format!(", uri {u}"))
                .unwrap_or_default()
        );
        if live.records_failed > 0 {
            let _ = writeln!(
                out,
                "not sent: {} records of the continuous flow's runs; latest: {}",
                live.records_failed,
                live.not_sent
                    .last()
                    .and_then(|n| n.message.as_deref())
                    .unwrap_or("(AppFlow's message not known yet)")
            );
        }
        if let Some(r) = &live.retiring {
            // A rebuild waiting for the previous flow's runs (README, "The integration degraded").
            let _ = writeln!(
                out,
                "rebuilding: {} stopped at {}, waiting for run(s) in progress: {}",
                live.flow_name,
                r.since.to_rfc3339(),
                if r.in_progress.is_empty() {
                    "checking".to_owned()
                } else {
                    r.in_progress.join(", ")
                }
            );
        }
    }
    if let Some(e) = &wf.last_error {
        let _ = writeln!(out, "\nerror: {}", e.message);
    }
    match wf.status {
        WorkflowStatus::Failed => {
            let _ = writeln!(out, "resume with: flowpilot workflow redrive {}", wf.id);
        }
        WorkflowStatus::Degraded => {
            let _ = writeln!(out, "rebuild with: flowpilot integration rebuild {}", wf.id);
        }
        _ => {}
    }
    let troubled = wf.status.is_terminal() && wf.status != WorkflowStatus::Cancelled
        || wf.status == WorkflowStatus::Degraded
        || t.records_failed > 0
        || wf.live.as_ref().is_some_and(|l| l.records_failed > 0)
        || wf.paused_until().is_some();
    if troubled {
        let _ = writeln!(
            out,
            "details and next steps: flowpilot workflow diagnose {}",
            wf.id
        );
    }
    out
}

pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let wanted = match args.status.as_deref() {
        None => None,
        Some(s) => Some(parse_status(s)?),
    };
    let ops = Ops::connect(&args.resources).await?;
    let everything = args.all || wanted.is_some_and(|s| !s.is_active());
    let listing = if everything {
        ops.store.list_all().await?
    } else {
        ops.store.list_active().await?
    };
    for item in &listing.unreadable {
        eprintln!(
            "warning: stored workflow {} is unreadable and not listed: {}",
            item.key, item.reason
        );
    }
    let mut workflows = listing.workflows;
    workflows.retain(|w| wanted.is_none_or(|s| w.status == s));
    workflows.sort_by_key(|w| w.created_at);
    if args.json {
        let rows: Vec<Value> = workflows
            .iter()
            .map(|w| {
                let t = totals(w);
                json!({
                    "workflow_id": w.id.as_str(),
                    "status": w.status.as_str(),
                    "connector": w.spec.connector.as_str(),
                    "domain": w.spec.domain,
                    "object_type": w.spec.object_type,
                    "batches": w.batches.len(),
                    "succeeded": t.succeeded,
                    "records": t.records,
                    "updated_at": w.updated_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if workflows.is_empty() {
        println!("no {}workflows", if everything { "" } else { "active " });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24}  {:<11}  {:<10}  {:<28}  {:>9}  {:>10}  updated",
        "id", "status", "connector", "domain/object", "batches", "records"
    );
    for w in &workflows {
        let t = totals(w);
        println!(
            "{:<24}  {:<11}  {:<10}  {:<28}  {:>9}  {:>10}  {}",
            w.id.as_str(),
            w.status.as_str(),
            w.spec.connector.as_str(),
            format!("{}/{}", w.spec.domain, w.spec.object_type),
            format!("{}/{}", t.succeeded, w.batches.len()),
            t.records,
            w.updated_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_status(s: &str) -> Result<WorkflowStatus, UsageError> {
    serde_json::from_value(Value::String(s.to_ascii_lowercase())).map_err(|_| {
        UsageError(format!(
            "unknown status `{s}`: use pending, backfilling, linking, live, degraded, \
             rebuilding, failed or cancelled"
        ))
    })
}

/// Sends the command `command(id, --reason)` for the workflow if `allowed(status)`, else
/// explains why not.
pub(crate) async fn send_checked(
    args: IdArgs,
    command: fn(WorkflowId, Option<String>) -> Command,
    allowed: fn(WorkflowStatus) -> bool,
    refusal: &str,
) -> anyhow::Result<ExitCode> {
    let ops = Ops::connect(&args.resources).await?;
    let wf = ops.load(&args.id).await?;
    if !allowed(wf.status) {
        return Err(UsageError(format!(
            "workflow {} is {}: {refusal}",
            wf.id,
            wf.status.as_str()
        ))
        .into());
    }
    let cmd = command(wf.id.clone(), args.reason.clone());
    let message_id = ops.send(&cmd).await?;
    println!(
        "Sent `{}` for workflow {} (message {message_id}).\nFollow it with: flowpilot workflow status {} --watch",
        cmd.name(),
        wf.id,
        wf.id
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: IdArgs) -> anyhow::Result<ExitCode> {
    send_checked(
        args,
        |workflow_id, reason| Command::Cancel {
            workflow_id,
            reason,
        },
        |s| s != WorkflowStatus::Cancelled,
        "it is already cancelled",
    )
    .await
}

pub async fn redrive(args: IdArgs) -> anyhow::Result<ExitCode> {
    send_checked(
        args,
        |workflow_id, reason| Command::Redrive {
            workflow_id,
            reason,
        },
        |s| s == WorkflowStatus::Failed,
        "only failed workflows can be redriven",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid Salesforce spec for domain `acme`, with `input`'s fields on top.
    fn spec(
        input: flowpilot_core::spec::SpecInput,
        now: chrono::DateTime<Utc>,
    ) -> flowpilot_core::spec::WorkflowSpec {
        flowpilot_core::spec::SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            ..input
        }
        .validate(now)
        .unwrap()
    }

    /// A workflow `id` over 2024 (with `extra`'s fields on top), planned at `now`.
    fn year_workflow(
        id: &str,
        extra: flowpilot_core::spec::SpecInput,
        now: chrono::DateTime<Utc>,
    ) -> Workflow {
        let spec = spec(
            flowpilot_core::spec::SpecInput {
                from: Some("2024-01-01".into()),
                to: Some("2025-01-01".into()),
                ..extra
            },
            now,
        );
        Workflow::new(WorkflowId::new(id).unwrap(), spec, now)
    }

    /// A 2024 workflow started, its first batch's StartFlow refused with `denial`.
    fn refused_a_slot(
        denial: flowpilot_core::effect::SlotDenial,
        now: chrono::DateTime<Utc>,
    ) -> Workflow {
        use flowpilot_core::decide::{Policy, decide};
        use flowpilot_core::effect::{AttemptStep, EffectKey, Outcome};
        use flowpilot_core::input::Input;
        let wf = year_workflow("wf-1", Default::default(), now);
        let wf = decide(&wf, Input::Start, now, &Policy::default()).workflow;
        let denied = Outcome::SlotDenied {
            key: EffectKey::attempt(0, 1, AttemptStep::Start),
            attempt: 1,
            denial,
        };
        decide(&wf, Input::Applied(vec![denied]), now, &Policy::default()).workflow
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = generated_id().unwrap();
        let b = generated_id().unwrap();
        assert!(
            a.as_str().starts_with("wf-") && a.as_str().len() == 13,
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn statuses_parse() {
        assert_eq!(parse_status("Failed").unwrap(), WorkflowStatus::Failed);
        assert!(
            parse_status("nope")
                .unwrap_err()
                .to_string()
                .contains("backfilling")
        );
    }

    /// Batches are numbered from 0 everywhere (flow `fp-…-b0000` is batch 0).
    #[test]
    fn status_numbers_batches_from_zero_like_the_flow_names() {
        let now = Utc::now();
        let wf = year_workflow("wf-1", Default::default(), now);
        let text = status_text(&wf, now);
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("batch  start"))
            .skip(1)
            .collect();
        assert!(rows[0].starts_with("    0  2024-01-01"), "{text}");
        assert!(rows[5].starts_with("    5  2024-11-01"), "{text}");
        let json = status_json(&wf);
        assert_eq!(json["batches"][0]["index"], 0);
        assert_eq!(json["batches"][5]["index"], 5);
    }

    #[test]
    fn a_managed_workflow_shows_its_engine_and_customer_profiles_workflow() {
        use flowpilot_core::decide::{Policy, decide};
        use flowpilot_core::input::Input;
        let now = Utc::now();
        let wf = year_workflow(
            "wf-1",
            flowpilot_core::spec::SpecInput {
                engine: Some("managed".into()),
                ..Default::default()
            },
            now,
        );
        let wf = decide(&wf, Input::Start, now, &Policy::default()).workflow;
        let text = status_text(&wf, now);
        assert!(
            text.contains(
                "engine   managed: Customer Profiles workflow not created yet (submission 1, status not read yet)"
            ),
            "{text}"
        );
        let wf = year_workflow("wf-2", Default::default(), now);
        assert!(!status_text(&wf, now).contains("engine"));
    }

    #[test]
    fn a_batch_refused_a_run_slot_shows_what_it_waits_for() {
        use flowpilot_core::effect::SlotDenial;
        let now = Utc::now();
        let wf = refused_a_slot(
            SlotDenial {
                scope: "profile sf".into(),
                in_use: 5,
                limit: 5,
                quota: false,
            },
            now,
        );
        let text = status_text(&wf, now);
        assert!(
            text.contains("waiting for a run slot on profile sf: 5/5 in use (1 batch(es)"),
            "{text}"
        );
        assert!(text.contains("waiting_slot"), "{text}");
        let json = status_json(&wf);
        assert_eq!(json["waiting_for_slot"]["in_use"], 5);
        assert_eq!(json["waiting_for_slot"]["limit"], 5);
        assert_eq!(json["waiting_for_slot"]["scope"], "profile sf");
        assert_eq!(json["batches"][0]["slot_wait"]["denials"], 1);
        assert_eq!(json["batches"][0]["status"], "retry_wait");
    }

    #[test]
    fn a_batch_appflow_refused_for_a_quota_says_the_limit_was_lowered() {
        use flowpilot_core::effect::SlotDenial;
        let now = Utc::now();
        let wf = refused_a_slot(
            SlotDenial {
                scope: "account".into(),
                in_use: 2,
                limit: 2,
                quota: true,
            },
            now,
        );
        assert_ne!(wf.status, WorkflowStatus::Failed);
        let text = status_text(&wf, now);
        assert!(
            text.contains(
                "waiting for a run slot on account: AppFlow refused: quota; effective limit lowered to 2 (2 in use)"
            ),
            "{text}"
        );
        let json = status_json(&wf);
        assert_eq!(json["waiting_for_slot"]["quota"], true);
        assert_eq!(json["batches"][0]["slot_wait"]["quota"], true);
    }

    #[test]
    fn a_split_shows_in_window_order_with_its_halves() {
        use flowpilot_core::decide::{Policy, decide};
        use flowpilot_core::ids::{FlowRole, flow_name};
        use flowpilot_core::input::{Input, RunReport};
        let now = Utc::now();
        let spec = spec(
            flowpilot_core::spec::SpecInput {
                from: Some("2024-01-01".into()),
                to: Some("2024-01-03".into()),
                batch_size: Some("P1D".into()),
                bulk_threshold: Some("PT1H".into()),
                ..Default::default()
            },
            now,
        );
        let id = WorkflowId::new("wf-1").unwrap();
        let p = Policy::default();
        let wf = Workflow::new(id.clone(), spec, now);
        let wf = decide(&wf, Input::Start, now, &p).workflow;
        let too_big = Input::RunEnded(RunReport {
            flow_name: flow_name(&id, FlowRole::Batch(0)),
            role: FlowRole::Batch(0),
            execution_id: None,
            succeeded: false,
            error: Some("QUERY_TIMEOUT: Your query request was running for too long.".into()),
            records_processed: None,
            record_failures: None,
            record_failure_message: None,
            pull_start: None,
            pull_end: None,
            ended_at: None,
        });
        let wf = decide(&wf, too_big, now, &p).workflow;
        let text = status_text(&wf, now);
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("batch  start"))
            .skip(1)
            .take(4)
            .collect();
        assert!(
            rows[0].starts_with("    0  2024-01-01  2024-01-02  split"),
            "{text}"
        );
        assert!(
            rows[1].starts_with("    2  2024-01-01  2024-01-01T12:00"),
            "{text}"
        );
        assert!(
            rows[2].starts_with("    3  2024-01-01T12:00  2024-01-02"),
            "{text}"
        );
        assert!(rows[3].starts_with("    1  2024-01-02"), "{text}");
        assert!(
            text.contains("0/3 succeeded, 1 running, 0 failed, 2 pending (1 split in two)"),
            "{text}"
        );
        assert!(
            text.contains("split: batch 0 [2024-01-01T00:00:00+00:00, 2024-01-02T00:00:00+00:00) into batches 2 and 3: QUERY_TIMEOUT"),
            "{text}"
        );
        let json = status_json(&wf);
        assert_eq!(json["batches"][0]["status"], "split");
        assert_eq!(json["batches"][0]["split_into"], serde_json::json!([2, 3]));
        assert_eq!(json["batches"][2]["split_from"], 0);
        assert_eq!(json["totals"]["batches"], 3);
        assert_eq!(json["totals"]["split"], 1);
        assert_eq!(json["split_floor_ms"], 3_600_000);
    }

    #[test]
    fn a_replan_by_density_says_what_it_saw() {
        use flowpilot_core::decide::{Policy, decide};
        use flowpilot_core::effect::{AttemptStep, EffectKey, Outcome};
        use flowpilot_core::ids::{FlowRole, flow_name};
        use flowpilot_core::input::{Input, RunReport};
        let now = Utc::now();
        let spec = spec(
            flowpilot_core::spec::SpecInput {
                from: Some("2024-01-01".into()),
                to: Some("2024-01-31".into()),
                batch_size: Some("P1D".into()),
                bulk_threshold: Some("PT1H".into()),
                target_records_per_run: Some(100),
                ..Default::default()
            },
            now,
        );
        let id = WorkflowId::new("wf-1").unwrap();
        let p = Policy::default();
        let mut wf = decide(&Workflow::new(id.clone(), spec, now), Input::Start, now, &p).workflow;
        for i in 0..3u32 {
            let started = Input::Applied(vec![Outcome::Started {
                key: EffectKey::attempt(i, 1, AttemptStep::Start),
                role: FlowRole::Batch(i),
                attempt: 1,
                execution_id: Some(format!("x{i}")),
            }]);
            wf = decide(&wf, started, now, &p).workflow;
            let ok = Input::RunEnded(RunReport {
                flow_name: flow_name(&id, FlowRole::Batch(i)),
                role: FlowRole::Batch(i),
                execution_id: Some(format!("x{i}")),
                succeeded: true,
                error: None,
                records_processed: Some(10),
                record_failures: Some(0),
                record_failure_message: None,
                pull_start: None,
                pull_end: None,
                ended_at: None,
            });
            wf = decide(&wf, ok, now, &p).workflow;
        }
        let text = status_text(&wf, now);
        assert!(
            text.contains("re-planned: from 2024-01-05T00:00:00+00:00, 2 window(s) of 312.0 h for about 100 records per run (the first completed windows held 30 records in 72.0 h); 26 planned window(s) replaced"),
            "{text}"
        );
        assert!(text.contains("3/6 succeeded"), "{text}");
        let json = status_json(&wf);
        assert_eq!(json["replan"]["windows"], 2);
        assert_eq!(json["target_records_per_run"], 100);
        assert_eq!(json["batches"][29]["status"], "replanned");
    }

    #[test]
    fn bars_fill_proportionally() {
        assert_eq!(bar(0.0), format!("[{}]", "-".repeat(BAR_WIDTH)));
        assert_eq!(bar(1.0), format!("[{}]", "#".repeat(BAR_WIDTH)));
    }
}
