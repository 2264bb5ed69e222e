//! Amazon Connect Customer Profiles adapter: the continuous integration (PutIntegration with a
//! scheduled, incremental `FlowDefinition`, which creates the live flow; DeleteIntegration).
//! The PascalCase model mirrors AppFlow's, minus destination config (Customer Profiles adds
//! it), `Map_all` and the deactivation threshold.

use aws_sdk_customerprofiles::Client;
use aws_sdk_customerprofiles::types::{
    ConnectorOperator, DataPullMode, FlowDefinition as CpFlowDefinition, MarketoConnectorOperator,
    OperatorPropertiesKeys, S3ConnectorOperator, SalesforceConnectorOperator,
    ScheduledTriggerProperties, ServiceNowConnectorOperator, Task, TaskType, TriggerConfig,
    TriggerProperties, TriggerType, ZendeskConnectorOperator,
};
use flowpilot_core::effect::{EffectError, FlowDefinition, Trigger};
use flowpilot_core::spec::Connector;

use super::appflow::to_smithy;
use super::tasks::{self, Kind, Op, Prop, TaskSpec};
use super::{build_error, effect_error, error_code};

#[derive(Clone, Debug)]
pub struct Profiles {
    client: Client,
}

impl Profiles {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// PutIntegration (create or update, so repeating it is harmless). Returns the integration
    /// URI, which is the ARN of the flow Customer Profiles created.
    pub async fn put_integration(
        &self,
        domain: &str,
        object_type: &str,
        flow: &FlowDefinition,
    ) -> Result<String, EffectError> {
        let definition = flow_definition(flow)?;
        let mut req = self
            .client
            .put_integration()
            .domain_name(domain)
            .object_type_name(object_type)
            .flow_definition(definition);
        // Customer Profiles wants 1..50 tags when the member is present: omit an empty map.
        for (k, v) in &flow.tags {
            req = req.tags(k, v);
        }
        let out = req.send().await.map_err(|e| effect_error(&e))?;
        Ok(out.uri().to_owned())
    }

    /// DeleteIntegration. Not found means an earlier attempt already deleted it.
    pub async fn delete_integration(&self, domain: &str, uri: &str) -> Result<(), EffectError> {
        match self
            .client
            .delete_integration()
            .domain_name(domain)
            .uri(uri)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(effect_error(&e)),
        }
    }
}

fn flow_definition(flow: &FlowDefinition) -> Result<CpFlowDefinition, EffectError> {
    let Some(kms_arn) = &flow.kms_arn else {
        return Err(EffectError {
            code: "InvalidRequest".to_owned(),
            message: format!(
                "Customer Profiles integrations need the domain's customer managed KMS key: set \
                 kms_arn (--kms-arn) on workflow for domain `{}`",
                flow.domain
            ),
            permanent: true,
        });
    };
    let tasks = tasks::tasks(flow)
        .iter()
        .map(|t| task(flow.connector, t))
        .collect::<Result<Vec<_>, _>>()?;
    CpFlowDefinition::builder()
        .flow_name(&flow.name)
        .description(&flow.description)
        .kms_arn(kms_arn)
        .source_flow_config(source_flow_config(flow)?)
        .set_tasks(Some(tasks))
        .trigger_config(trigger_config(&flow.trigger)?)
        .build()
        .map_err(build_error)
}

fn trigger_config(trigger: &Trigger) -> Result<TriggerConfig, EffectError> {
    match trigger {
        Trigger::OnDemand => TriggerConfig::builder()
            .trigger_type(TriggerType::Ondemand)
            .build()
            .map_err(build_error),
        Trigger::Scheduled {
            expression,
            first_execution_from,
            // Not in the Customer Profiles model; AppFlow applies its default.
            deactivation_threshold: _,
        } => {
            let scheduled = ScheduledTriggerProperties::builder()
                .schedule_expression(expression)
                .data_pull_mode(DataPullMode::Incremental)
                .first_execution_from(to_smithy(*first_execution_from))
                .build()
                .map_err(build_error)?;
            TriggerConfig::builder()
                .trigger_type(TriggerType::Scheduled)
                .trigger_properties(TriggerProperties::builder().scheduled(scheduled).build())
                .build()
                .map_err(build_error)
        }
    }
}

super::source_flow_config_fn!(aws_sdk_customerprofiles, SourceConnectorType);

fn connector_operator(connector: Connector, op: Op) -> ConnectorOperator {
    let b = ConnectorOperator::builder();
    match connector {
        Connector::Salesforce => b.salesforce(match op {
            Op::Projection => SalesforceConnectorOperator::Projection,
            Op::NoOp => SalesforceConnectorOperator::NoOp,
            Op::Between => SalesforceConnectorOperator::Between,
            Op::GreaterThan => SalesforceConnectorOperator::GreaterThan,
        }),
        Connector::Marketo => b.marketo(match op {
            Op::Projection => MarketoConnectorOperator::Projection,
            Op::NoOp => MarketoConnectorOperator::NoOp,
            Op::Between => MarketoConnectorOperator::Between,
            Op::GreaterThan => MarketoConnectorOperator::GreaterThan,
        }),
        Connector::Servicenow => b.service_now(match op {
            Op::Projection => ServiceNowConnectorOperator::Projection,
            Op::NoOp => ServiceNowConnectorOperator::NoOp,
            Op::Between => ServiceNowConnectorOperator::Between,
            Op::GreaterThan => ServiceNowConnectorOperator::GreaterThan,
        }),
        Connector::Zendesk => b.zendesk(match op {
            Op::Projection => ZendeskConnectorOperator::Projection,
            Op::NoOp => ZendeskConnectorOperator::NoOp,
            // Zendesk only filters with GREATER_THAN.
            Op::Between | Op::GreaterThan => ZendeskConnectorOperator::GreaterThan,
        }),
        Connector::S3 => b.s3(match op {
            Op::Projection => S3ConnectorOperator::Projection,
            Op::NoOp => S3ConnectorOperator::NoOp,
            Op::Between => S3ConnectorOperator::Between,
            Op::GreaterThan => S3ConnectorOperator::GreaterThan,
        }),
    }
    .build()
}

fn task(connector: Connector, spec: &TaskSpec) -> Result<Task, EffectError> {
    let mut b = Task::builder()
        .set_source_fields(Some(spec.source_fields.clone()))
        .connector_operator(connector_operator(connector, spec.op))
        .task_type(match spec.kind {
            Kind::Filter => TaskType::Filter,
            Kind::Map => TaskType::Map,
        })
        .set_destination_field(spec.destination_field.clone());
    for (key, value) in &spec.properties {
        let key = match key {
            Prop::DataType => OperatorPropertiesKeys::DataType,
            Prop::LowerBound => OperatorPropertiesKeys::LowerBound,
            Prop::UpperBound => OperatorPropertiesKeys::UpperBound,
            Prop::Value => OperatorPropertiesKeys::Value,
        };
        b = b.task_properties(key, value);
    }
    b.build().map_err(build_error)
}
