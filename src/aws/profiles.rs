//! Amazon Connect Customer Profiles adapter: the continuous integration (PutIntegration with a
//! scheduled, incremental `FlowDefinition`, which creates the live flow; DeleteIntegration).
//! The PascalCase model mirrors AppFlow's, minus destination config (Customer Profiles adds
//! it), `Map_all` and the deactivation threshold.

use aws_sdk_customerprofiles::Client;
use aws_sdk_customerprofiles::types::{
    DataPullMode, FlowDefinition as CpFlowDefinition, ScheduledTriggerProperties, TriggerConfig,
    TriggerProperties, TriggerType,
};
use flowpilot_core::effect::{EffectError, FlowDefinition, Trigger};

use super::appflow::to_smithy;
use super::tasks;
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

super::flow_parts::flow_parts!(aws_sdk_customerprofiles, SourceConnectorType);
