use std::collections::HashMap;

use chrono::{Duration, TimeZone, Utc};
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::{BatchStatus, Workflow};
use flowpilot_core::spec::SpecInput;
use proptest::prelude::*;

use super::*;

/// A daily workflow of `days` batches, all pending.
fn workflow(days: i64) -> Workflow {
    let from = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let to = from + Duration::days(days);
    let spec = SpecInput {
        domain: Some("acme".into()),
        object_type: Some("Account".into()),
        connector: Some("salesforce".into()),
        connector_profile: Some("sf".into()),
        object: Some("Account".into()),
        from: Some(from.to_rfc3339()),
        to: Some(to.to_rfc3339()),
        batch_size: Some("P1D".into()),
        bulk_threshold: Some("P1D".into()),
        kms_arn: Some("arn:aws:kms:us-east-1:123456789012:key/k".into()),
        ..Default::default()
    }
    .validate(Utc::now())
    .unwrap();
    Workflow::new(WorkflowId::new("wf-chunks").unwrap(), spec, Utc::now())
}

/// What the table holds: chunk items by id, and the header (document, chunk list).
#[derive(Default)]
struct Table {
    chunks: HashMap<String, String>,
    header: Option<(String, Vec<ChunkRef>)>,
    next_id: u32,
}

impl Table {
    /// Saves as the store does: chunks first, then the header, then the stale chunks go.
    fn save(&mut self, wf: &Workflow) -> (usize, usize) {
        let stored = self
            .header
            .as_ref()
            .map(|h| h.1.clone())
            .unwrap_or_default();
        let mut id = self.next_id;
        let plan = plan(wf, &stored, || {
            id += 1;
            format!("c{id}")
        })
        .unwrap();
        self.next_id = id;
        for (r, json) in &plan.writes {
            assert!(
                self.chunks.insert(r.id.clone(), json.clone()).is_none(),
                "chunk items are never overwritten"
            );
        }
        for r in &plan.stale {
            self.chunks.remove(&r.id);
        }
        self.header = Some((plan.doc, plan.refs));
        (plan.writes.len(), plan.stale.len())
    }

    fn load(&self) -> Workflow {
        let (doc, refs) = self.header.as_ref().unwrap();
        let head: Workflow = serde_json::from_str(doc).unwrap();
        let chunks = refs
            .iter()
            .map(|r| {
                (
                    r.id.clone(),
                    serde_json::from_str(&self.chunks[&r.id]).unwrap(),
                )
            })
            .collect();
        assemble(head, refs, chunks).unwrap()
    }
}

fn finish(wf: &mut Workflow, i: usize) {
    let b = &mut wf.batches[i];
    b.status = BatchStatus::Succeeded;
    b.attempt = 1;
    b.records = 42;
    b.execution_id = Some(format!("exec-{i}"));
    b.finished_at = Some(Utc::now());
    wf.version += 1;
}

#[test]
fn a_five_year_daily_workflow_round_trips_as_it_runs_and_rewrites_a_chunk_only_at_group_boundaries()
{
    let mut wf = workflow(1826);
    assert_eq!(wf.batches.len(), 1826);
    let mut table = Table::default();
    let (written, _) = table.save(&wf);
    // Group 0 is the frontier's: inline. The other full groups, a group or more ahead: apart.
    assert_eq!(written, 1826 / CHUNK_BATCHES - 1);
    assert_eq!(table.load(), wf);
    let mut chunk_saves = 0;
    for i in 0..wf.batches.len() {
        wf.batches[i].status = BatchStatus::Running;
        wf.batches[i].attempt = 1;
        wf.batches[i].started_at = Some(Utc::now());
        wf.version += 1;
        let (w, s) = table.save(&wf);
        chunk_saves += usize::from(w + s > 0);
        finish(&mut wf, i);
        let (w, s) = table.save(&wf);
        chunk_saves += usize::from(w + s > 0);
        // Reading everything back each time is slow in a debug build: around the boundaries.
        if i % CHUNK_BATCHES < 2 || i % CHUNK_BATCHES == CHUNK_BATCHES - 1 || w + s > 0 {
            assert_eq!(table.load(), wf, "after batch {i}");
        }
        let (doc, _) = table.header.as_ref().unwrap();
        assert!(
            doc.len() < 60_000,
            "header of {} bytes at batch {i}",
            doc.len()
        );
    }
    // Per group: it comes inline once (the frontier nears) and goes back once (it passed).
    let groups = 1826 / CHUNK_BATCHES;
    assert!(
        chunk_saves <= 2 * groups + 1,
        "{chunk_saves} saves touched chunks"
    );
    assert_eq!(table.chunks.len(), groups, "no chunk item left behind");
}

#[test]
fn a_single_item_document_reads_as_it_always_did() {
    let wf = workflow(131);
    let doc = serde_json::to_string(&wf).unwrap();
    let head: Workflow = serde_json::from_str(&doc).unwrap();
    assert_eq!(assemble(head, &[], HashMap::new()).unwrap(), wf);
}

#[test]
fn a_missing_chunk_says_read_again() {
    let wf = workflow(400);
    let p = plan(&wf, &[], || "x".into()).unwrap();
    let head: Workflow = serde_json::from_str(&p.doc).unwrap();
    assert!(matches!(
        assemble(head, &p.refs, HashMap::new()),
        Err(AssembleError::Missing(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any sequence of batch changes (in any order, at any position, with batches appended as
    /// splits do) saved and loaded gives back the workflow, and items are never overwritten.
    #[test]
    fn store_round_trips_across_chunk_boundaries(
        days in 2i64..450,
        steps in prop::collection::vec((any::<prop::sample::Index>(), 0u8..5), 1..60),
    ) {
        let mut wf = workflow(days);
        prop_assume!(!wf.batches.is_empty());
        let mut table = Table::default();
        table.save(&wf);
        prop_assert_eq!(&table.load(), &wf);
        for (at, what) in steps {
            let i = at.index(wf.batches.len());
            match what {
                0 => finish(&mut wf, i),
                1 => {
                    wf.batches[i].status = BatchStatus::Running;
                    wf.batches[i].started_at = Some(Utc::now());
                }
                2 => wf.batches[i].status = BatchStatus::Failed,
                3 => {
                    let mut half = wf.batches[i].clone();
                    half.index = wf.batches.len() as u32;
                    half.split_from = Some(i as u32);
                    wf.batches.push(half);
                }
                _ => (0..i).for_each(|j| finish(&mut wf, j)),
            }
            wf.version += 1;
            table.save(&wf);
            prop_assert_eq!(&table.load(), &wf);
            let named: usize = table.header.as_ref().unwrap().1.len();
            prop_assert_eq!(table.chunks.len(), named, "stale chunks are removed");
        }
    }
}
