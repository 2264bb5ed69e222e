//! `flowpilot workflow plan`: the batch plan for a spec, without calling AWS.

use std::process::ExitCode;

use chrono::Utc;
use flowpilot_core::plan::{Plan, plan, rfc3339};
use flowpilot_core::spec::WorkflowSpec;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: super::spec_args::SpecArgs,
    /// Print JSON instead of a table:
    /// {"bulk", "batches": [{"index", "start", "end"}], "continuous_first_execution_from", "notes"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let spec = args.spec.resolve(now)?;
    let mut p = plan(&spec);
    if spec.to > now {
        p.notes.push(format!(
            "`to` ({}) is in the future: records changed after the backfill ran but before `to` \
             would be missed; prefer the default (now)",
            rfc3339(spec.to)
        ));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&p))?);
    } else {
        print!("{}", table(&spec, &p));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn to_json(p: &Plan) -> serde_json::Value {
    json!({
        "bulk": p.bulk,
        "batches": (0u32..).zip(&p.batches).map(|(i, w)| json!({
            "index": i,
            "start": rfc3339(w.start),
            "end": rfc3339(w.end),
        })).collect::<Vec<_>>(),
        "continuous_first_execution_from": rfc3339(p.continuous_first_execution_from),
        "notes": p.notes,
    })
}

fn table(spec: &WorkflowSpec, p: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let source = match &spec.source {
        flowpilot_core::spec::SourceObject::Object { name } => name.clone(),
        flowpilot_core::spec::SourceObject::S3 { bucket, prefix } => {
            format!("s3://{bucket}/{}", prefix.as_deref().unwrap_or(""))
        }
    };
    let _ = writeln!(
        out,
        "{} {} ({}) → domain {}, object type {}",
        spec.connector.as_str(),
        source,
        spec.connector_profile,
        spec.domain,
        spec.object_type
    );
    let _ = writeln!(
        out,
        "range      [{}, {})",
        rfc3339(spec.from),
        rfc3339(spec.to)
    );
    let _ = writeln!(out, "bulk phase {}", if p.bulk { "yes" } else { "no" });
    if p.bulk {
        // What a run with record-level failures comes to (README, "An object was not sent").
        let _ = writeln!(
            out,
            "records    a batch run may fail to write {} record(s) and still succeed; beyond \
             that the batch fails with a redrive command",
            spec.max_record_failures
        );
        if flowpilot_core::plan::can_split(spec.connector) {
            // What a run too big or too long for its window comes to (README, "Adaptive windows").
            let _ = writeln!(
                out,
                "splits     a batch run that fails for size or time is split in two, recursively, \
                 down to windows of {} ms ({}); at that floor it is retried as usual",
                spec.split_floor_ms,
                human_ms(spec.split_floor_ms)
            );
            if let Some(target) = spec.target_records_per_run {
                let _ = writeln!(
                    out,
                    "resize     after {} completed windows, the windows not started yet are \
                     re-planned to about {target} records per run from the density observed",
                    flowpilot_core::spec::RESIZE_AFTER
                );
            }
        }
    }
    if !p.batches.is_empty() {
        let _ = writeln!(
            out,
            "\n{:>5}  {:<25} {:<25}",
            "BATCH", "START", "END (exclusive)"
        );
        for (i, w) in p.batches.iter().enumerate() {
            let _ = writeln!(
                out,
                "{i:>5}  {:<25} {:<25}",
                rfc3339(w.start),
                rfc3339(w.end)
            );
        }
    }
    let _ = writeln!(
        out,
        "\ncontinuous integration {} from {}",
        spec.continuous.schedule,
        rfc3339(p.continuous_first_execution_from)
    );
    for note in &p.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// `1h`, `30m`, `45s` or `500ms`: the way `--split-floor` is written.
fn human_ms(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}
