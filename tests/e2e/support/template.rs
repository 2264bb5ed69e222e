//! Reading `infra/flowpilot.yaml` the way CloudFormation would, enough for the contract tests:
//! resources by type, and `Ref` / `Fn::GetAtt` / `Fn::Sub` resolved to the names and ARNs a
//! deployment with known parameters produces, so resource policies can be evaluated against
//! the ARNs AWS would put in the request context.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Map, Value};

/// A template plus the parameter values of one deployment.
pub struct Template {
    pub json: Value,
    pub params: BTreeMap<String, String>,
    pub account: String,
    pub region: String,
}

impl Template {
    /// The template as deploy.py deploys it (name prefix `flowpilot`, domain `demo`).
    pub fn new(json: Value) -> Self {
        let params = [
            ("NamePrefix", "flowpilot"),
            ("DomainName", "demo"),
            ("DomainKmsKeyArn", super::e2e::KMS_ARN),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self {
            json,
            params,
            account: "123456789012".to_owned(),
            region: super::REGION.to_owned(),
        }
    }

    pub fn resources(&self) -> anyhow::Result<&Map<String, Value>> {
        self.json["Resources"]
            .as_object()
            .context("template has no Resources")
    }

    pub fn resource(&self, name: &str) -> anyhow::Result<&Value> {
        self.resources()?
            .get(name)
            .with_context(|| format!("template has no resource {name}"))
    }

    /// Logical ids and bodies of every resource of `kind` (e.g. `AWS::Events::Rule`).
    pub fn of_type<'a>(&'a self, kind: &str) -> anyhow::Result<Vec<(&'a str, &'a Value)>> {
        Ok(self
            .resources()?
            .iter()
            .filter(|(_, r)| r["Type"] == kind)
            .map(|(k, r)| (k.as_str(), r))
            .collect())
    }

    /// The value an intrinsic (or a literal) resolves to, as a string.
    pub fn string(&self, v: &Value) -> anyhow::Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Object(m) if m.len() == 1 => {
                let (f, arg) = m.iter().next().context("empty intrinsic")?;
                match f.as_str() {
                    "Ref" => self.reference(arg.as_str().context("Ref of a non-string")?),
                    "Fn::GetAtt" => {
                        let parts = arg.as_array().context("GetAtt needs [resource, attr]")?;
                        let res = parts
                            .first()
                            .and_then(Value::as_str)
                            .context("GetAtt resource")?;
                        let attr = parts
                            .get(1)
                            .and_then(Value::as_str)
                            .context("GetAtt attribute")?;
                        self.attribute(res, attr)
                    }
                    "Fn::Sub" => self.sub(
                        arg.as_str()
                            .context("only the one-argument Fn::Sub is used")?,
                    ),
                    other => bail!("intrinsic {other} is not modelled by the contract tests"),
                }
            }
            other => bail!("expected a string or an intrinsic, got {other}"),
        }
    }

    /// A value that may be one string or a list of them.
    pub fn strings(&self, v: &Value) -> anyhow::Result<Vec<String>> {
        match v {
            Value::Array(items) => items.iter().map(|i| self.string(i)).collect(),
            other => Ok(vec![self.string(other)?]),
        }
    }

    /// Resolves every intrinsic inside a document (a policy), leaving the rest as it is.
    pub fn resolve(&self, v: &Value) -> anyhow::Result<Value> {
        match v {
            Value::Object(m)
                if m.len() == 1 && m.keys().all(|k| k == "Ref" || k.starts_with("Fn::")) =>
            {
                Ok(Value::String(self.string(v)?))
            }
            Value::Object(m) => Ok(Value::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                    .collect::<anyhow::Result<_>>()?,
            )),
            Value::Array(a) => Ok(Value::Array(
                a.iter()
                    .map(|v| self.resolve(v))
                    .collect::<anyhow::Result<_>>()?,
            )),
            other => Ok(other.clone()),
        }
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::AccountId" => Some(self.account.clone()),
            "AWS::Region" => Some(self.region.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            _ => None,
        }
    }

    /// `Ref`: a parameter's value, a pseudo parameter, or what CloudFormation documents `Ref`
    /// of that resource type to return.
    fn reference(&self, name: &str) -> anyhow::Result<String> {
        if let Some(p) = self.params.get(name) {
            return Ok(p.clone());
        }
        if let Some(p) = self.pseudo(name) {
            return Ok(p);
        }
        let r = self.resource(name)?;
        let props = &r["Properties"];
        match r["Type"].as_str().unwrap_or_default() {
            "AWS::SQS::Queue" => Ok(format!(
                "https://sqs.{}.amazonaws.com/{}/{}",
                self.region,
                self.account,
                self.string(&props["QueueName"])?
            )),
            "AWS::SNS::Topic" => Ok(format!(
                "arn:aws:sns:{}:{}:{}",
                self.region,
                self.account,
                self.string(&props["TopicName"])?
            )),
            "AWS::Events::Rule" | "AWS::Events::EventBus" | "AWS::DynamoDB::Table" => self.string(
                props
                    .get("Name")
                    .or(props.get("TableName"))
                    .context("unnamed")?,
            ),
            // Key ids are generated; the contract tests need a stable stand-in.
            "AWS::KMS::Key" => Ok(format!("{name}-key-id")),
            other => bail!("Ref of {other} ({name}) is not modelled"),
        }
    }

    fn attribute(&self, name: &str, attr: &str) -> anyhow::Result<String> {
        let r = self.resource(name)?;
        let props = &r["Properties"];
        let (region, account) = (&self.region, &self.account);
        let kind = r["Type"].as_str().unwrap_or_default();
        Ok(match (kind, attr) {
            ("AWS::SQS::Queue", "Arn") => format!(
                "arn:aws:sqs:{region}:{account}:{}",
                self.string(&props["QueueName"])?
            ),
            ("AWS::SQS::Queue", "QueueName") => self.string(&props["QueueName"])?,
            ("AWS::Events::Rule", "Arn") => {
                let rule = self.string(&props["Name"])?;
                match props.get("EventBusName") {
                    // Rules on a custom bus have the bus in their ARN.
                    Some(bus) => format!(
                        "arn:aws:events:{region}:{account}:rule/{}/{rule}",
                        self.string(bus)?
                    ),
                    None => format!("arn:aws:events:{region}:{account}:rule/{rule}"),
                }
            }
            ("AWS::Events::EventBus", "Name") => self.string(&props["Name"])?,
            ("AWS::Events::EventBus", "Arn") => format!(
                "arn:aws:events:{region}:{account}:event-bus/{}",
                self.string(&props["Name"])?
            ),
            ("AWS::DynamoDB::Table", "Arn") => format!(
                "arn:aws:dynamodb:{region}:{account}:table/{}",
                self.string(&props["TableName"])?
            ),
            ("AWS::IAM::Role", "Arn") => format!(
                "arn:aws:iam::{account}:role/{}",
                self.string(&props["RoleName"])?
            ),
            ("AWS::KMS::Key", "Arn") => {
                format!("arn:aws:kms:{region}:{account}:key/{name}-key-id")
            }
            _ => bail!("GetAtt {name}.{attr} ({kind}) is not modelled"),
        })
    }

    fn sub(&self, text: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| anyhow!("unterminated ${{ in {text}"))?;
            let var = &rest[start + 2..start + end];
            let value = match var.split_once('.') {
                Some((res, attr)) if !var.starts_with("AWS::") => self.attribute(res, attr)?,
                _ => self.reference(var)?,
            };
            out.push_str(&value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}
