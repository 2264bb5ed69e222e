//! Customer Profiles' managed bulk import (CreateIntegrationWorkflow, GetWorkflow,
//! GetWorkflowSteps, DeleteWorkflow) for `--engine managed` (docs/architecture.md, "The managed
//! engine"). The flow definition is the one flowpilot builds for its own flows (source, tasks,
//! KMS key), in Customer Profiles' copy of AppFlow's shapes.

use aws_sdk_customerprofiles::types as t;
use chrono::{DateTime, Utc};
use flowpilot_core::effect::{EffectError, FlowDefinition, ManagedStepView, ManagedView, Trigger};
use flowpilot_core::plan::Window;
use flowpilot_core::spec::{Connector, SourceObject};

use super::Profiles;
use crate::aws::tasks::{self, Kind, Op, Prop, TaskSpec};
use crate::aws::{build_error, effect_error, error_code};

/// What one CreateIntegrationWorkflow needs besides the flow definition.
pub struct Submission<'a> {
    pub domain: &'a str,
    pub object_type: &'a str,
    /// The role Customer Profiles assumes (`FLOWPILOT_MANAGED_ROLE_ARN`).
    pub role_arn: &'a str,
    pub flow: &'a FlowDefinition,
    pub batches: &'a [Window],
}

fn invalid(message: String) -> EffectError {
    EffectError {
        code: "InvalidRequest".to_owned(),
        message,
        permanent: true,
    }
}

impl Profiles {
    /// CreateIntegrationWorkflow (`APPFLOW_INTEGRATION`); answers the workflow id.
    pub async fn create_integration_workflow(
        &self,
        s: &Submission<'_>,
    ) -> Result<String, EffectError> {
        // Customer Profiles' FlowDefinition requires a KMS key: the spec's, else the domain's.
        let kms = match &s.flow.kms_arn {
            Some(k) => k.clone(),
            None => self.domain_key(s.domain).await?,
        };
        let mut batches = Vec::with_capacity(s.batches.len());
        for w in s.batches {
            batches.push(
                t::Batch::builder()
                    .start_time(smithy(w.start))
                    .end_time(smithy(w.end))
                    .build()
                    .map_err(build_error)?,
            );
        }
        let flow = t::FlowDefinition::builder()
            .flow_name(&s.flow.name)
            .description(&s.flow.description)
            .kms_arn(kms)
            .source_flow_config(source(s.flow)?)
            .set_tasks(Some(
                tasks::tasks(s.flow)
                    .iter()
                    .map(|spec| task(s.flow.connector, spec))
                    .collect::<Result<Vec<_>, _>>()?,
            ))
            .trigger_config(trigger(&s.flow.trigger)?)
            .build()
            .map_err(build_error)?;
        let config = t::IntegrationConfig::builder()
            .appflow_integration(
                t::AppflowIntegration::builder()
                    .flow_definition(flow)
                    .set_batches(Some(batches))
                    .build(),
            )
            .build();
        let mut req = self
            .client
            .create_integration_workflow()
            .domain_name(s.domain)
            .workflow_type(t::WorkflowType::AppflowIntegration)
            .integration_config(config)
            .object_type_name(s.object_type)
            .role_arn(s.role_arn);
        for (k, v) in &s.flow.tags {
            req = req.tags(k, v);
        }
        let out = req.send().await.map_err(|e| effect_error(&e))?;
        Ok(out.workflow_id().to_owned())
    }

    async fn domain_key(&self, domain: &str) -> Result<String, EffectError> {
        let out = self
            .client
            .get_domain()
            .domain_name(domain)
            .send()
            .await
            .map_err(|e| effect_error(&e))?;
        out.default_encryption_key()
            .map(str::to_owned)
            .ok_or_else(|| {
                invalid(format!(
                    "domain `{domain}` has no default encryption key and the spec no --kms-arn: \
                 the managed engine's flow definition needs a KMS key"
                ))
            })
    }

    /// GetWorkflow plus every page of GetWorkflowSteps.
    pub async fn watch_workflow(
        &self,
        domain: &str,
        workflow_id: &str,
    ) -> Result<ManagedView, EffectError> {
        let wf = self
            .client
            .get_workflow()
            .domain_name(domain)
            .workflow_id(workflow_id)
            .send()
            .await
            .map_err(|e| effect_error(&e))?;
        let mut view = ManagedView {
            status: wf
                .status()
                .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()),
            error: wf
                .error_description()
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
            steps: Vec::new(),
        };
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_workflow_steps()
                .domain_name(domain)
                .workflow_id(workflow_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| effect_error(&e))?;
            for item in page.items() {
                if let Some(step) = item.appflow_integration() {
                    view.steps.push(ManagedStepView {
                        flow_name: step.flow_name().to_owned(),
                        status: step.status().as_str().to_owned(),
                        records: u64::try_from(step.records_processed()).unwrap_or(0),
                        message: Some(step.execution_message().to_owned())
                            .filter(|m| !m.is_empty()),
                    });
                }
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(view)
    }

    /// ListIntegrations (every page, hidden ones included): the URI of the integration whose
    /// `WorkflowId` is `workflow_id`, if any yet.
    pub async fn find_workflow_integration(
        &self,
        domain: &str,
        workflow_id: &str,
    ) -> Result<Option<String>, EffectError> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_integrations()
                .domain_name(domain)
                .include_hidden(true)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| effect_error(&e))?;
            if let Some(found) = page
                .items()
                .iter()
                .find(|i| i.workflow_id() == Some(workflow_id))
            {
                return Ok(Some(found.uri().to_owned()));
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    /// DeleteWorkflow. Not found means already gone.
    pub async fn delete_workflow(
        &self,
        domain: &str,
        workflow_id: &str,
    ) -> Result<(), EffectError> {
        match self
            .client
            .delete_workflow()
            .domain_name(domain)
            .workflow_id(workflow_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(effect_error(&e)),
        }
    }
}

/// The continuous integration's trigger (the steps run on demand whatever it says).
fn trigger(trigger: &Trigger) -> Result<t::TriggerConfig, EffectError> {
    match trigger {
        Trigger::OnDemand => t::TriggerConfig::builder()
            .trigger_type(t::TriggerType::Ondemand)
            .build()
            .map_err(build_error),
        // Customer Profiles' model has no deactivation threshold: AppFlow's default applies.
        Trigger::Scheduled {
            expression,
            first_execution_from,
            ..
        } => {
            let scheduled = t::ScheduledTriggerProperties::builder()
                .schedule_expression(expression)
                .data_pull_mode(t::DataPullMode::Incremental)
                .first_execution_from(smithy(*first_execution_from))
                .build()
                .map_err(build_error)?;
            t::TriggerConfig::builder()
                .trigger_type(t::TriggerType::Scheduled)
                .trigger_properties(t::TriggerProperties::builder().scheduled(scheduled).build())
                .build()
                .map_err(build_error)
        }
    }
}

fn smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

fn source(flow: &FlowDefinition) -> Result<t::SourceFlowConfig, EffectError> {
    let SourceObject::Object { name } = &flow.source else {
        return Err(invalid(
            "the managed engine imports SaaS objects, not S3 files".to_owned(),
        ));
    };
    let props = t::SourceConnectorProperties::builder();
    let (props, kind) = match flow.connector {
        Connector::Salesforce => (
            props.salesforce(
                t::SalesforceSourceProperties::builder()
                    .object(name)
                    .build()
                    .map_err(build_error)?,
            ),
            t::SourceConnectorType::Salesforce,
        ),
        Connector::Marketo => (
            props.marketo(
                t::MarketoSourceProperties::builder()
                    .object(name)
                    .build()
                    .map_err(build_error)?,
            ),
            t::SourceConnectorType::Marketo,
        ),
        Connector::Servicenow => (
            props.service_now(
                t::ServiceNowSourceProperties::builder()
                    .object(name)
                    .build()
                    .map_err(build_error)?,
            ),
            t::SourceConnectorType::Servicenow,
        ),
        other => {
            return Err(invalid(format!(
                "the managed engine does not import from {}",
                other.as_str()
            )));
        }
    };
    t::SourceFlowConfig::builder()
        .connector_type(kind)
        .connector_profile_name(&flow.connector_profile)
        .source_connector_properties(props.build())
        .build()
        .map_err(build_error)
}

fn operator(connector: Connector, op: Op) -> Result<t::ConnectorOperator, EffectError> {
    let b = t::ConnectorOperator::builder();
    let b = match connector {
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
        other => {
            return Err(invalid(format!(
                "the managed engine does not import from {}",
                other.as_str()
            )));
        }
    };
    Ok(b.build())
}

fn task(connector: Connector, spec: &TaskSpec) -> Result<t::Task, EffectError> {
    let mut b = t::Task::builder()
        .set_source_fields(Some(spec.source_fields.clone()))
        .connector_operator(operator(connector, spec.op)?)
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
