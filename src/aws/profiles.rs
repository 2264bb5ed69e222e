//! Amazon Connect Customer Profiles adapter: linking the live flow as the continuous
//! integration (PutIntegration with the flow's ARN as `Uri`) and unlinking it
//! (DeleteIntegration). flowpilot creates the live flow itself with AppFlow CreateFlow, so the
//! flow carries flowpilot's tag and the worker role's tag-conditioned AppFlow permissions apply
//! to it (README, "IAM").

use aws_sdk_customerprofiles::Client;
use flowpilot_core::effect::EffectError;

use super::{effect_error, error_code};

mod workflows;

pub use workflows::Submission;

#[derive(Clone, Debug)]
pub struct Profiles {
    client: Client,
}

impl Profiles {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// PutIntegration linking the flow `flow_arn` to `object_type` of `domain` (create or
    /// update, so repeating it is harmless). Returns the integration URI Customer Profiles
    /// answered, which must be that flow's ARN.
    pub async fn put_integration(
        &self,
        domain: &str,
        object_type: &str,
        flow_arn: &str,
    ) -> Result<String, EffectError> {
        let out = self
            .client
            .put_integration()
            .domain_name(domain)
            .object_type_name(object_type)
            .uri(flow_arn)
            .send()
            .await
            .map_err(|e| effect_error(&e))?;
        let uri = out.uri();
        if uri != flow_arn {
            // An integration for some other flow would leave ours unlinked while looking live.
            return Err(EffectError {
                code: "UnexpectedIntegrationUri".to_owned(),
                message: format!(
                    "PutIntegration for {flow_arn} in domain `{domain}` answered Uri `{uri}`"
                ),
                permanent: true,
            });
        }
        Ok(uri.to_owned())
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
