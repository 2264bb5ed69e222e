//! Batch planner (DESIGN.md §1, §4.6): half-open, contiguous windows anchored at `from`.
//!
//! CONTRACT: `pub fn plan(spec: &WorkflowSpec) -> Plan`; `pub fn filter_for(spec, window) ->
//! Option<FilterTask>` (BETWEEN lower = start − 1 ms, upper = end; Zendesk GREATER_THAN; S3 none).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub bulk: bool,
    pub batches: Vec<Window>,
    pub continuous_first_execution_from: DateTime<Utc>,
    pub notes: Vec<String>,
}
