//! Flow runs: start, timed completion (writes into the ledger), cancellation, scheduling.
//!
//! Scheduled flows run on a compressed clock: every `tick_ms` of real time one run pulls the
//! next schedule interval of sim time, starting at `firstExecutionFrom` (or 30 days back, as
//! AppFlow's first incremental run does), and never beyond wall-clock now: once caught up,
//! each tick pulls `[cursor, now)`. The cursor only advances on success, so a failed run's
//! window is pulled again by the next run (no gaps; partial writes show up as duplicates).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::events::{self, Outgoing, report_time};
use crate::flow::Trigger;
use crate::outcome;
use crate::source::{MsWindow, ms_to_datetime};
use crate::state::{ExecStatus, FlowStatus, LastRun, Run, Sim, State};

/// Bytes per synthetic record, for `bytesProcessed` / `data-processed`.
const RECORD_BYTES: u64 = 512;

/// Start a run of `flow` now; the caller holds the state lock. Returns the execution id.
pub fn start_run(
    sim: &Arc<Sim>,
    st: &mut State,
    flow_name: &str,
    incremental: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Option<String> {
    let flow = st.flows.get_mut(flow_name)?;
    let now = Utc::now();
    flow.runs_started += 1;
    flow.running += 1;
    let max = st.max_concurrent.entry(flow_name.to_owned()).or_insert(0);
    *max = (*max).max(flow.running);

    let plan = sim.faults();
    let planned_ms = sim.rand_range(plan.run_duration_ms.min, plan.run_duration_ms.max);
    let mut window = flow.spec.filter;
    if let Some((from, to)) = incremental {
        window = window.intersect(MsWindow {
            lo: Some(from.timestamp_millis()),
            hi: Some(to.timestamp_millis()),
        });
    }
    let execution_id = uuid::Uuid::new_v4().to_string();
    let cancel = sim.shutdown.child_token();
    let run = Run {
        execution_id: execution_id.clone(),
        flow_name: flow.name.clone(),
        flow_arn: flow.arn.clone(),
        flow_uid: flow.uid.clone(),
        spec: flow.spec.clone(),
        attempt: flow.runs_started,
        status: ExecStatus::InProgress,
        started_at: now,
        updated_at: now,
        ended_at: None,
        planned_ms,
        window,
        incremental,
        records_processed: 0,
        records_written: 0,
        record_failures: 0,
        error: None,
        record_failure_message: None,
        pull_first: None,
        pull_last: None,
        cancel: cancel.clone(),
    };
    tracing::info!(
        flow = flow_name,
        execution_id,
        attempt = run.attempt,
        "run started"
    );
    let detail = report_detail(sim, &run);
    let resource = flow.uid.clone();
    record_and_send(sim, st, events::START, detail, resource, false);
    if let Some(profile) = run.spec.source_profile.clone() {
        let running = 1 + st
            .runs
            .values()
            .filter(|r| {
                r.spec.source_profile.as_ref() == Some(&profile)
                    && matches!(r.status, ExecStatus::InProgress | ExecStatus::CancelStarted)
            })
            .count();
        let running = u32::try_from(running).unwrap_or(u32::MAX);
        let max = st.max_concurrent_per_profile.entry(profile).or_insert(0);
        *max = (*max).max(running);
    }
    st.runs.insert(execution_id.clone(), run);
    st.max_concurrent_account = st.max_concurrent_account.max(runs_in_progress(st));
    st.run_order.push(execution_id.clone());

    let sim2 = Arc::clone(sim);
    let id = execution_id.clone();
    sim.tasks.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(StdDuration::from_millis(planned_ms)) => {}
            _ = cancel.cancelled() => {}
        }
        if !sim2.shutdown.is_cancelled() {
            finish_run(&sim2, &id);
        }
    });
    Some(execution_id)
}

/// Runs in progress (or being cancelled) in the account.
pub fn runs_in_progress(st: &State) -> u32 {
    let n = st
        .runs
        .values()
        .filter(|r| matches!(r.status, ExecStatus::InProgress | ExecStatus::CancelStarted))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Fields shared by every run report.
fn report_detail(sim: &Sim, run: &Run) -> Value {
    let mut d = json!({
        "flow-name": run.flow_name,
        "flow-arn": run.flow_arn,
        "execution-id": run.execution_id,
        "created-by": sim.caller_arn(),
        "source": run.spec.event_source(),
        "destination": run.spec.dest_type.to_uppercase(),
        "source-object": run.spec.source_object,
        "destination-object": run.spec.event_destination_object(),
        "trigger-type": run.spec.trigger.event_name(),
        "start-time": report_time(run.started_at),
    });
    if let Some((from, to)) = run.incremental {
        d["incremental-transfer-time-range"] =
            Value::from(format!("{} - {}", report_time(from), report_time(to)));
    }
    d
}

/// Append to the `/_sim/events` log, then publish unless the fault plan drops it; maybe
/// publish a delayed duplicate.
fn record_and_send(
    sim: &Arc<Sim>,
    st: &mut State,
    detail_type: &'static str,
    detail: Value,
    resource: String,
    droppable: bool,
) {
    let plan = sim.faults();
    let dropped = droppable && sim.roll() < plan.drop_end_event_rate;
    let duplicated = !dropped && sim.roll() < plan.duplicate_event_rate;
    st.emitted_events.push(json!({
        "detail-type": detail_type,
        "detail": detail,
        "dropped": dropped,
        "duplicated": duplicated,
    }));
    if dropped {
        tracing::info!(detail_type, "fault plan dropped event");
        return;
    }
    let ev = Outgoing {
        detail_type,
        detail,
        resource,
    };
    if duplicated {
        let sink = sim.events.clone();
        let dup = ev.clone();
        let delay = plan.duplicate_event_delay_ms;
        let shutdown = sim.shutdown.clone();
        sim.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(StdDuration::from_millis(delay)) => sink.send(dup),
                _ = shutdown.cancelled() => {}
            }
        });
    }
    sim.events.send(ev);
}

/// Complete a run: decide its outcome, write records, update the flow, publish End.
pub fn finish_run(sim: &Arc<Sim>, execution_id: &str) {
    let mut guard = sim.state();
    let st = &mut *guard;
    let Some(run) = st.runs.get(execution_id) else {
        return; // reset while running
    };
    if !matches!(
        run.status,
        ExecStatus::InProgress | ExecStatus::CancelStarted
    ) {
        return;
    }
    let now = Utc::now();
    let spec = run.spec.clone();
    let records = sim.source.records(
        &spec.source_key,
        &spec.source_object,
        run.window,
        run.started_at.timestamp_millis(),
    );
    let plan = sim.faults();
    // Out of the map while deciding: the decision updates other parts of the state.
    let Some(taken) = st.runs.remove(execution_id) else {
        return;
    };
    let outcome = outcome::decide(st, &plan, sim.config.seed, &taken, &records, now);
    st.runs.insert(execution_id.to_owned(), taken);
    let (written, put_failed) = outcome::partition(&records, &outcome);
    if let Some(domain) = &spec.dest_domain {
        let object_type = spec.dest_object_type.as_deref().unwrap_or("");
        st.ledger.write(domain, object_type, &written);
        st.ledger.put_failed(domain, object_type, &put_failed);
    }
    let processed = &records[..outcome.processed.min(records.len())];
    let (status, error) = (outcome.status, outcome.error.clone());

    let Some(run) = st.runs.get_mut(execution_id) else {
        return;
    };
    run.status = status;
    run.error = error.clone();
    run.updated_at = now;
    run.ended_at = Some(now);
    run.records_processed = processed.len() as u64;
    run.records_written = written.len() as u64;
    run.record_failures = put_failed.len() as u64;
    run.record_failure_message = outcome.record_failure_message.clone();
    run.pull_first = processed.first().map(|r| r.ts_ms);
    run.pull_last = processed.last().map(|r| r.ts_ms);
    tracing::info!(flow = %run.flow_name, execution_id, status = status.as_str(), records = written.len(), "run ended");

    let mut end = report_detail(sim, run);
    let base = end.clone();
    let mut deactivated = None;
    let flow_uid = run.flow_uid.clone();
    // The flow may have been force-deleted (or recreated) while running: the run is still reported.
    if let Some(flow) = st
        .flows
        .get_mut(&run.flow_name)
        .filter(|f| f.uid == flow_uid)
    {
        flow.running = flow.running.saturating_sub(1);
        flow.last_run = Some(LastRun {
            status,
            time: now,
            message: error
                .clone()
                .or_else(|| run.record_failure_message.clone())
                .unwrap_or_else(|| "Execution Successful".into()),
        });
        if status == ExecStatus::Successful {
            flow.consecutive_failures = 0;
            if let Some((_, to)) = run.incremental {
                flow.cursor = Some(to);
            }
        } else if status == ExecStatus::Error {
            flow.consecutive_failures += 1;
            if let Trigger::Scheduled(s) = &flow.spec.trigger {
                let threshold = s
                    .deactivation_threshold
                    .unwrap_or(sim.config.default_deactivation_threshold);
                if flow.status == FlowStatus::Active && flow.consecutive_failures >= threshold {
                    let reason = format!(
                        "Flow deactivated after {} consecutive failed runs; last error: {}",
                        flow.consecutive_failures,
                        error.as_deref().unwrap_or("")
                    );
                    flow.status = FlowStatus::Errored;
                    flow.status_message = Some(reason.clone());
                    flow.activation += 1;
                    deactivated = Some(reason);
                }
            }
        }
    }
    let n = run.records_processed;
    end["num-of-records-processed"] = Value::from(n.to_string());
    end["num-of-records-filtered"] = Value::from("0");
    end["num-of-documents-processed"] = Value::from("0");
    end["num-of-record-failures"] = Value::from(run.record_failures.to_string());
    end["data-processed"] = Value::from((n * RECORD_BYTES).to_string());
    end["end-time"] = Value::from(report_time(now));
    end["status"] = Value::from(match status {
        ExecStatus::Successful => "Execution Successful",
        ExecStatus::Canceled => "Execution Canceled",
        _ => "Execution Failed",
    });
    if let Some(e) = &error {
        end["error"] = Value::from(e.clone());
    }
    let resource = flow_uid.replace('-', "");
    let deactivation = deactivated.map(|reason| {
        let mut d = base.clone();
        for k in [
            "execution-id",
            "start-time",
            "incremental-transfer-time-range",
        ] {
            if let Some(o) = d.as_object_mut() {
                o.remove(k);
            }
        }
        d["deactivation-reason"] = Value::from(reason);
        d["deactivation-time"] = Value::from(report_time(now));
        d
    });
    record_and_send(sim, st, events::END, end, resource.clone(), true);
    if let Some(d) = deactivation {
        tracing::warn!(flow = %d["flow-name"], "scheduled flow deactivated");
        record_and_send(sim, st, events::DEACTIVATED, d, resource, false);
    }
}

/// Ask in-progress runs to stop; returns ids that were not cancellable.
pub fn cancel_runs(st: &mut State, flow_uid: &str, ids: Option<&[String]>) -> Vec<String> {
    let targets: Vec<String> = match ids {
        Some(ids) => ids.to_vec(),
        None => st
            .runs
            .values()
            .filter(|r| r.flow_uid == flow_uid && r.status == ExecStatus::InProgress)
            .map(|r| r.execution_id.clone())
            .collect(),
    };
    let mut invalid = Vec::new();
    for id in targets {
        match st.runs.get_mut(&id) {
            Some(r) if r.flow_uid == flow_uid && r.status == ExecStatus::InProgress => {
                r.status = ExecStatus::CancelStarted;
                r.updated_at = Utc::now();
                r.cancel.cancel();
            }
            _ => invalid.push(id),
        }
    }
    invalid
}

/// Run a scheduled flow's ticks until it is deactivated, deleted or the sim shuts down.
pub fn spawn_scheduler(sim: &Arc<Sim>, flow_name: String, uid: String, activation: u64) {
    let sim2 = Arc::clone(sim);
    let tick = StdDuration::from_millis(sim.config.tick_ms.max(1));
    sim.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = sim2.shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let mut guard = sim2.state();
            let st = &mut *guard;
            let Some(flow) = st.flows.get(&flow_name) else {
                return;
            };
            if flow.uid != uid || flow.activation != activation || flow.status != FlowStatus::Active
            {
                return;
            }
            // One run at a time per scheduled flow: a slow run delays the next tick's pull.
            if flow.running > 0 {
                continue;
            }
            let Trigger::Scheduled(s) = &flow.spec.trigger else {
                return;
            };
            let now = Utc::now();
            let from = flow
                .cursor
                .or(s.first_execution_from)
                .unwrap_or(now - Duration::days(30));
            let to = (from + s.interval).min(now);
            if to <= from {
                continue;
            }
            start_run(&sim2, st, &flow_name, Some((from, to)));
        }
    });
}

/// `/_sim/runs` view of one run.
pub fn run_json(r: &Run) -> Value {
    json!({
        "flow_name": r.flow_name,
        "execution_id": r.execution_id,
        "attempt": r.attempt,
        "trigger": r.spec.trigger.api_name(),
        "status": r.status.as_str(),
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "window_from": r.window.lo.map(ms_to_datetime),
        "window_to": r.window.hi.map(ms_to_datetime),
        "incremental_from": r.incremental.map(|x| x.0),
        "incremental_to": r.incremental.map(|x| x.1),
        "records_processed": r.records_processed,
        "records_written": r.records_written,
        "record_failures": r.record_failures,
        "record_failure_message": r.record_failure_message,
        "error": r.error,
    })
}
