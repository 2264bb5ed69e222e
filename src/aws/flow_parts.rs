//! Builders for the source and task members of an AppFlow flow definition (CreateFlow), from
//! the core's SDK-neutral [`FlowDefinition`](flowpilot_core::effect::FlowDefinition).

pub(super) fn source_flow_config(
    flow: &flowpilot_core::effect::FlowDefinition,
) -> Result<aws_sdk_appflow::types::SourceFlowConfig, flowpilot_core::effect::EffectError> {
    use crate::aws::build_error;
    use aws_sdk_appflow::types as t;
    use flowpilot_core::effect::{EffectError, Trigger};
    use flowpilot_core::spec::{Connector, SourceObject};

    let props = t::SourceConnectorProperties::builder();
    let props = match (&flow.source, flow.connector) {
        (SourceObject::S3 { bucket, prefix }, _) => props.s3(t::S3SourceProperties::builder()
            .bucket_name(bucket)
            .set_bucket_prefix(prefix.clone())
            .build()
            .map_err(build_error)?),
        (SourceObject::Object { name }, Connector::Salesforce) => props.salesforce(
            t::SalesforceSourceProperties::builder()
                .object(name)
                .build()
                .map_err(build_error)?,
        ),
        (SourceObject::Object { name }, Connector::Marketo) => props.marketo(
            t::MarketoSourceProperties::builder()
                .object(name)
                .build()
                .map_err(build_error)?,
        ),
        (SourceObject::Object { name }, Connector::Servicenow) => props.service_now(
            t::ServiceNowSourceProperties::builder()
                .object(name)
                .build()
                .map_err(build_error)?,
        ),
        (SourceObject::Object { name }, Connector::Zendesk) => props.zendesk(
            t::ZendeskSourceProperties::builder()
                .object(name)
                .build()
                .map_err(build_error)?,
        ),
        (SourceObject::Object { .. }, Connector::S3) => {
            return Err(EffectError {
                code: "InvalidRequest".to_owned(),
                message: "an S3 source needs a bucket, not an object name".to_owned(),
                permanent: true,
            });
        }
    };
    let mut builder = t::SourceFlowConfig::builder()
        .connector_type(t::ConnectorType::from(flow.connector.appflow_type()))
        .connector_profile_name(&flow.connector_profile)
        .source_connector_properties(props.build());
    if let (Trigger::Scheduled { .. }, Some(field)) = (&flow.trigger, &flow.timestamp_field) {
        builder = builder.incremental_pull_config(
            t::IncrementalPullConfig::builder()
                .datetime_type_field_name(field)
                .build(),
        );
    }
    builder.build().map_err(build_error)
}

fn connector_operator(
    connector: flowpilot_core::spec::Connector,
    op: crate::aws::tasks::Op,
) -> aws_sdk_appflow::types::ConnectorOperator {
    use crate::aws::tasks::Op;
    use aws_sdk_appflow::types as t;
    use flowpilot_core::spec::Connector;

    let b = t::ConnectorOperator::builder();
    match connector {
        Connector::Salesforce => b.salesforce(match op {
            Op::Projection => t::SalesforceConnectorOperator::Projection,
            Op::NoOp => t::SalesforceConnectorOperator::NoOp,
            Op::Between => t::SalesforceConnectorOperator::Between,
            Op::GreaterThan => t::SalesforceConnectorOperator::GreaterThan,
        }),
        Connector::Marketo => b.marketo(match op {
            Op::Projection => t::MarketoConnectorOperator::Projection,
            Op::NoOp => t::MarketoConnectorOperator::NoOp,
            Op::Between => t::MarketoConnectorOperator::Between,
            Op::GreaterThan => t::MarketoConnectorOperator::GreaterThan,
        }),
        Connector::Servicenow => b.service_now(match op {
            Op::Projection => t::ServiceNowConnectorOperator::Projection,
            Op::NoOp => t::ServiceNowConnectorOperator::NoOp,
            Op::Between => t::ServiceNowConnectorOperator::Between,
            Op::GreaterThan => t::ServiceNowConnectorOperator::GreaterThan,
        }),
        Connector::Zendesk => b.zendesk(match op {
            Op::Projection => t::ZendeskConnectorOperator::Projection,
            Op::NoOp => t::ZendeskConnectorOperator::NoOp,
            // Zendesk has no BETWEEN; the core never plans one for it (single GREATER_THAN run).
            Op::Between | Op::GreaterThan => t::ZendeskConnectorOperator::GreaterThan,
        }),
        Connector::S3 => b.s3(match op {
            Op::Projection => t::S3ConnectorOperator::Projection,
            Op::NoOp => t::S3ConnectorOperator::NoOp,
            Op::Between => t::S3ConnectorOperator::Between,
            Op::GreaterThan => t::S3ConnectorOperator::GreaterThan,
        }),
    }
    .build()
}

pub(super) fn task(
    connector: flowpilot_core::spec::Connector,
    spec: &crate::aws::tasks::TaskSpec,
) -> Result<aws_sdk_appflow::types::Task, flowpilot_core::effect::EffectError> {
    use crate::aws::build_error;
    use crate::aws::tasks::{Kind, Prop};
    use aws_sdk_appflow::types as t;

    let mut b = t::Task::builder()
        .set_source_fields(Some(spec.source_fields.clone()))
        .connector_operator(connector_operator(connector, spec.op))
        .task_type(match spec.kind {
            Kind::Filter => t::TaskType::Filter,
            Kind::Map => t::TaskType::Map,
        })
        .set_destination_field(spec.destination_field.clone());
    for (key, value) in &spec.properties {
        let key = match key {
            Prop::DataType => t::OperatorPropertiesKeys::DataType,
            Prop::LowerBound => t::OperatorPropertiesKeys::LowerBound,
            Prop::UpperBound => t::OperatorPropertiesKeys::UpperBound,
            Prop::Value => t::OperatorPropertiesKeys::Value,
        };
        b = b.task_properties(key, value);
    }
    b.build().map_err(build_error)
}
