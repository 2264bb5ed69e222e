//! Requests for Customer Profiles' managed workflow (CreateIntegrationWorkflow), shared by the
//! simulator's wire tests and the execution-role tests.

use aws_sdk_customerprofiles::primitives::DateTime;
use aws_sdk_customerprofiles::types as cp;
use chrono::{TimeZone, Utc};

/// Midnight UTC of a day in January 2024 (`d` may run past the month's end).
fn jan_2024(d: u32) -> DateTime {
    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |t| t.timestamp());
    DateTime::from_secs(start + i64::from(d - 1) * 86_400)
}

/// A Salesforce `Account` flow definition, scheduled hourly once live.
pub fn flow_definition(name: &str, profile: &str, kms: &str) -> anyhow::Result<cp::FlowDefinition> {
    Ok(cp::FlowDefinition::builder()
        .flow_name(name)
        .kms_arn(kms)
        .source_flow_config(
            cp::SourceFlowConfig::builder()
                .connector_type(cp::SourceConnectorType::Salesforce)
                .connector_profile_name(profile)
                .source_connector_properties(
                    cp::SourceConnectorProperties::builder()
                        .salesforce(
                            cp::SalesforceSourceProperties::builder()
                                .object("Account")
                                .build()?,
                        )
                        .build(),
                )
                .build()?,
        )
        .tasks(
            cp::Task::builder()
                .task_type(cp::TaskType::Map)
                .source_fields("Id")
                .destination_field("Id")
                .connector_operator(
                    cp::ConnectorOperator::builder()
                        .salesforce(cp::SalesforceConnectorOperator::NoOp)
                        .build(),
                )
                .build()?,
        )
        .trigger_config(
            cp::TriggerConfig::builder()
                .trigger_type(cp::TriggerType::Scheduled)
                .trigger_properties(
                    cp::TriggerProperties::builder()
                        .scheduled(
                            cp::ScheduledTriggerProperties::builder()
                                .schedule_expression("rate(1hours)")
                                .build()?,
                        )
                        .build(),
                )
                .build()?,
        )
        .build()?)
}

/// `days` one-day batches from 2024-01-01.
pub fn day_batches(days: u32) -> anyhow::Result<Vec<cp::Batch>> {
    (0..days)
        .map(|d| {
            Ok(cp::Batch::builder()
                .start_time(jan_2024(1 + d))
                .end_time(jan_2024(2 + d))
                .build()?)
        })
        .collect()
}
