//! Health event drafts: recorded while a transition is built, rendered at its end.
//!
//! Event ids are `{workflow}/{slug}{suffix}` where the suffix names the occurrence
//! (`/b3/a2`, `/g2/s17`, `/r1`); each occurrence can happen at most once in a workflow's life,
//! so consumers can de-duplicate on the id and tests can prove it.

use chrono::{DateTime, Utc};

use crate::advice::Advice;
use crate::health::{BatchRef, HealthDetail, HealthEvent, HealthKind, Progress};
use crate::model::{BatchStatus, ErrorInfo, NotSent, Workflow};

pub(crate) struct Draft {
    pub kind: HealthKind,
    pub suffix: String,
    pub batch: Option<usize>,
    pub attempt: Option<u32>,
    pub flow_name: Option<String>,
    pub error: Option<ErrorInfo>,
    pub retry_at: Option<DateTime<Utc>>,
    pub command: Option<String>,
    pub recommendation: Option<String>,
    pub action: Option<&'static str>,
    pub connector_profile: bool,
    /// Record failures a `Records Not Sent` reports.
    pub not_sent: Option<NotSent>,
    /// Positions of the halves a `Batch Split` reports.
    pub halves: Vec<usize>,
}

impl Draft {
    pub fn new(kind: HealthKind, suffix: impl Into<String>) -> Self {
        Self {
            kind,
            suffix: suffix.into(),
            batch: None,
            attempt: None,
            flow_name: None,
            error: None,
            retry_at: None,
            command: None,
            recommendation: None,
            action: None,
            connector_profile: false,
            not_sent: None,
            halves: Vec::new(),
        }
    }

    /// Carries `advice`: its words, its action and its command (which replaces any other).
    pub fn advise(&mut self, advice: Advice) {
        use crate::advice::Action;
        self.connector_profile = matches!(advice.action, Action::Reconnect | Action::Wait);
        self.action = Some(advice.action.as_str());
        self.recommendation = Some(advice.recommendation);
        self.command = Some(advice.command);
    }

    pub fn render(self, wf: &Workflow, now: DateTime<Utc>) -> HealthEvent {
        let batch_ref = |b: &crate::model::Batch| BatchRef {
            index: b.index,
            start: b.window.start,
            end: b.window.end,
        };
        let batch = self.batch.and_then(|i| wf.batches.get(i));
        let done = wf
            .batches
            .iter()
            .filter(|b| b.status == BatchStatus::Succeeded)
            .count();
        // A split batch's window is counted through its halves.
        let total = wf.runnable_batches().count();
        let halves: Vec<BatchRef> = self
            .halves
            .iter()
            .filter_map(|&i| wf.batches.get(i))
            .map(batch_ref)
            .collect();
        // Record counts are AppFlow's numbers: saturate rather than overflow on absurd ones.
        let records = wf
            .batches
            .iter()
            .fold(0u64, |sum, b| sum.saturating_add(b.records))
            .saturating_add(wf.live.as_ref().map_or(0, |l| l.records));
        HealthEvent {
            kind: self.kind,
            detail: HealthDetail {
                event_id: format!("{}/{}{}", wf.id, self.kind.slug(), self.suffix),
                workflow_id: wf.id.to_string(),
                domain: wf.spec.domain.clone(),
                object_type: wf.spec.object_type.clone(),
                connector: wf.spec.connector.as_str().to_owned(),
                status: wf.status.as_str().to_owned(),
                flow_name: self.flow_name,
                batch: batch.map(batch_ref),
                attempt: self.attempt,
                progress: Progress {
                    batches_done: u32::try_from(done).unwrap_or(u32::MAX),
                    batches_total: u32::try_from(total).unwrap_or(u32::MAX),
                    records,
                },
                transient: self.error.as_ref().map(|e| e.transient),
                error: self.error.map(|e| e.message),
                retry_at: self.retry_at,
                command: self.command,
                recommendation: self.recommendation,
                action: self.action.map(str::to_owned),
                connector_profile: self
                    .connector_profile
                    .then(|| wf.spec.connector_profile.clone()),
                records_failed: self.not_sent.as_ref().map(|n| n.records_failed),
                records_processed: self.not_sent.as_ref().map(|n| n.records_processed),
                max_record_failures: self
                    .not_sent
                    .is_some()
                    .then_some(wf.spec.max_record_failures),
                halves: (!halves.is_empty()).then_some(halves),
                time: now,
            },
        }
    }
}

impl super::Ctx<'_> {
    pub fn publish(&mut self, draft: Draft) {
        self.health.push(draft);
    }

    pub fn redrive_command(&self) -> String {
        crate::advice::redrive_command(&self.wf.id)
    }
}
