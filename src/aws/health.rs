//! Health events on the EventBridge health bus (docs/architecture.md, "Health events"): PutEvents in batches of at
//! most 10 entries; entries EventBridge reports as failed are resent, a bounded number of times.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use flowpilot_core::effect::EffectError;
use flowpilot_core::health::{HEALTH_SOURCE, HealthEvent};

use super::effect_error;

/// PutEvents accepts at most 10 entries per call.
const MAX_BATCH: usize = 10;
/// Rounds of resending entries that failed individually (the call itself succeeded).
const RESEND_ROUNDS: usize = 3;

/// Health events from every handler of the worker, sent together (see [`super::coalesce`]).
pub type HealthSender = super::coalesce::Coalescer<HealthEvent, Result<(), EffectError>>;

#[derive(Clone, Debug)]
pub struct HealthPublisher {
    client: Client,
    bus: String,
}

impl HealthPublisher {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// A [`HealthSender`] over this publisher: events submitted within `linger` of each other
    /// share PutEvents calls (up to 10 entries each).
    pub fn coalesced(self, linger: std::time::Duration) -> HealthSender {
        super::coalesce::Coalescer::spawn(MAX_BATCH, linger, move |events: Vec<HealthEvent>| {
            let publisher = self.clone();
            async move { publisher.publish(&events).await }
        })
    }

    /// Publishes `events`; the result for each event is at the same index.
    pub async fn publish(&self, events: &[HealthEvent]) -> Vec<Result<(), EffectError>> {
        let mut results: Vec<Result<(), EffectError>> = Vec::with_capacity(events.len());
        for chunk in events.chunks(MAX_BATCH) {
            results.extend(self.publish_chunk(chunk).await);
        }
        results
    }

    async fn publish_chunk(&self, events: &[HealthEvent]) -> Vec<Result<(), EffectError>> {
        let mut results: Vec<Result<(), EffectError>> = Vec::with_capacity(events.len());
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            match serde_json::to_string(&event.detail) {
                Ok(detail) => {
                    results.push(Ok(()));
                    entries.push(Some(
                        PutEventsRequestEntry::builder()
                            .event_bus_name(&self.bus)
                            .source(HEALTH_SOURCE)
                            .detail_type(event.kind.detail_type())
                            .detail(detail)
                            .build(),
                    ));
                }
                Err(e) => {
                    results.push(Err(EffectError {
                        code: "InvalidRequest".to_owned(),
                        message: format!("health event detail does not serialise: {e}"),
                        permanent: true,
                    }));
                    entries.push(None);
                }
            }
        }
        // Indexes (into `events`) still to send.
        let mut pending: Vec<usize> = (0..events.len())
            .filter(|i| entries[*i].is_some())
            .collect();
        for _ in 0..RESEND_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let batch: Vec<PutEventsRequestEntry> =
                pending.iter().filter_map(|i| entries[*i].clone()).collect();
            match self
                .client
                .put_events()
                .set_entries(Some(batch))
                .send()
                .await
            {
                Ok(out) => {
                    let mut still = Vec::new();
                    for (pos, idx) in pending.iter().enumerate() {
                        let failed = out
                            .entries()
                            .get(pos)
                            .is_none_or(|r| r.error_code().is_some());
                        if failed {
                            let r = out.entries().get(pos);
                            results[*idx] = Err(EffectError {
                                code: r
                                    .and_then(|r| r.error_code())
                                    .unwrap_or("MissingResultEntry")
                                    .to_owned(),
                                message: r
                                    .and_then(|r| r.error_message())
                                    .unwrap_or("PutEvents returned no result for this entry")
                                    .to_owned(),
                                permanent: false,
                            });
                            still.push(*idx);
                        } else {
                            results[*idx] = Ok(());
                        }
                    }
                    pending = still;
                }
                Err(e) => {
                    // The SDK already retried the call; report every pending entry as failed.
                    let err = effect_error(&e);
                    for idx in &pending {
                        results[*idx] = Err(err.clone());
                    }
                    break;
                }
            }
        }
        results
    }
}
