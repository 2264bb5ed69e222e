//! The task list of a flow in an SDK-neutral form (kept apart from the SDK types so the list
//! itself can be unit-tested); `flow_parts::task` converts it for CreateFlow.
//!
//! Tasks: a PROJECTION Filter of every field, one NO_OP Map per field (destination = same
//! name), and the window Filter (`BETWEEN` with epoch-ms `LOWER_BOUND`/`UPPER_BOUND` and
//! `DATA_TYPE=datetime`, or `GREATER_THAN` with `VALUE`) when the flow has one.

use flowpilot_core::effect::{FilterTask, FlowDefinition};

/// Connector operator of a task (the connector itself comes from the flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Projection,
    NoOp,
    Between,
    GreaterThan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Filter,
    Map,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prop {
    DataType,
    LowerBound,
    UpperBound,
    Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    pub kind: Kind,
    pub op: Op,
    pub source_fields: Vec<String>,
    pub destination_field: Option<String>,
    pub properties: Vec<(Prop, String)>,
}

/// The tasks of `flow`, in the order AppFlow applies them.
pub fn tasks(flow: &FlowDefinition) -> Vec<TaskSpec> {
    let mut out = Vec::with_capacity(flow.fields.len() + 2);
    out.push(TaskSpec {
        kind: Kind::Filter,
        op: Op::Projection,
        source_fields: flow.fields.clone(),
        destination_field: None,
        properties: Vec::new(),
    });
    for field in &flow.fields {
        out.push(TaskSpec {
            kind: Kind::Map,
            op: Op::NoOp,
            source_fields: vec![field.clone()],
            destination_field: Some(field.clone()),
            properties: Vec::new(),
        });
    }
    match &flow.filter {
        Some(FilterTask::Between {
            field,
            lower_exclusive_ms,
            upper_exclusive_ms,
        }) => out.push(TaskSpec {
            kind: Kind::Filter,
            op: Op::Between,
            source_fields: vec![field.clone()],
            destination_field: None,
            properties: vec![
                (Prop::DataType, "datetime".to_owned()),
                (Prop::LowerBound, lower_exclusive_ms.to_string()),
                (Prop::UpperBound, upper_exclusive_ms.to_string()),
            ],
        }),
        Some(FilterTask::GreaterThan {
            field,
            value_exclusive_ms,
        }) => out.push(TaskSpec {
            kind: Kind::Filter,
            op: Op::GreaterThan,
            source_fields: vec![field.clone()],
            destination_field: None,
            properties: vec![
                (Prop::DataType, "datetime".to_owned()),
                (Prop::Value, value_exclusive_ms.to_string()),
            ],
        }),
        None => {}
    }
    out
}
