//! Workflows as the store holds them must keep loading: these items were written by the
//! version whose effect keys were plain strings (every key form it produced appears), and they
//! must read back into typed keys and write out exactly as stored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use flowpilot_core::effect::{AttemptStep, EffectKey, LiveStep};
use flowpilot_core::model::Workflow;
use serde_json::Value;

const STORED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/stored/workflows-with-string-keys.json"
));

#[test]
fn items_written_with_string_keys_load_and_write_back_unchanged() {
    let stored: Value = serde_json::from_str(STORED).unwrap();
    let workflows: Vec<Workflow> = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(serde_json::to_value(&workflows).unwrap(), stored);

    let keys: Vec<&EffectKey> = workflows
        .iter()
        .flat_map(|w| w.outbox.iter().map(|e| &e.key))
        .collect();
    assert!(keys.contains(&&EffectKey::attempt(
        1,
        1,
        AttemptStep::Describe {
            at_ms: 1_767_226_260_000
        }
    )));
    assert!(keys.contains(&&EffectKey::live(2, LiveStep::DeleteIntegration)));
    assert!(keys.iter().any(|k| matches!(k, EffectKey::Publish { event_id } if event_id == "acme/batch-retry-scheduled/b2/a1")));
    assert!(keys.iter().any(|k| matches!(k, EffectKey::Cancel(_))));
}
