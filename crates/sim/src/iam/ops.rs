//! The IAM view of SQS, DynamoDB and EventBridge requests passing through the front: for one
//! operation and its input, the (action, resource ARN, condition keys) to authorize.
//! Sources: the Service Authorization Reference pages for `sqs`, `dynamodb` and `events`
//! (see crates/sim/README.md, "IAM enforcement"); assumptions are marked there.

use serde_json::Value;

use super::policy::{Ctx, CtxValue};

/// One authorization question: may the caller perform `action` on `resource` given `context`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub action: String,
    /// An ARN, or `*` for actions without resource-level permissions.
    pub resource: String,
    pub context: Ctx,
    /// The resource a denial message names when `resource` is `*` but the request targets a
    /// known ARN (e.g. the flow a CreateFlow would create).
    pub named: Option<String>,
}

impl Check {
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            context: Ctx::new(),
            named: None,
        }
    }

    /// Evaluate on `*` (the action has no resource type) but name `arn` in a denial.
    pub fn unscoped(action: impl Into<String>, arn: impl Into<String>) -> Self {
        Self {
            named: Some(arn.into()),
            ..Self::new(action, "*")
        }
    }

    /// What a denial message names.
    pub fn shown_resource(&self) -> &str {
        self.named.as_deref().unwrap_or(&self.resource)
    }

    pub fn with(mut self, key: &str, value: CtxValue) -> Self {
        self.context.insert(key.to_owned(), value);
        self
    }
}

/// Which service an awsJson `X-Amz-Target` or awsQuery request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    Sqs,
    DynamoDb,
    Events,
    /// Anything else, by its SigV4 signing name (`logs`, `kms`, `sts`, ...).
    Other(String),
}

impl Service {
    /// `AmazonSQS.SendMessage` → (Sqs, "SendMessage"). `scope_service` (the signing name in
    /// the credential scope) names services this table does not know.
    pub fn from_target<'t>(target: &'t str, scope_service: &str) -> (Service, &'t str) {
        let (prefix, op) = target.split_once('.').unwrap_or(("", target));
        let service = match prefix {
            "AmazonSQS" => Service::Sqs,
            "DynamoDB_20120810" => Service::DynamoDb,
            "AWSEvents" => Service::Events,
            _ => Service::from_scope(scope_service),
        };
        (service, op)
    }

    pub fn from_scope(scope_service: &str) -> Service {
        match scope_service {
            "sqs" => Service::Sqs,
            "dynamodb" => Service::DynamoDb,
            "events" => Service::Events,
            other => Service::Other(other.to_owned()),
        }
    }

    pub fn prefix(&self) -> &str {
        match self {
            Service::Sqs => "sqs",
            Service::DynamoDb => "dynamodb",
            Service::Events => "events",
            Service::Other(s) => s,
        }
    }
}

/// Where ARNs of this request live.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub account: &'a str,
}

/// Every check an operation needs (at least one). `input` is the JSON body (awsJson) or the
/// form fields as a JSON object of strings (awsQuery).
pub fn checks(service: &Service, op: &str, input: &Value, scope: Scope<'_>) -> Vec<Check> {
    let mut out = match service {
        Service::Sqs => sqs(op, input, scope),
        Service::DynamoDb => dynamodb(op, input, scope),
        Service::Events => events(op, input, scope),
        Service::Other(prefix) => vec![Check::new(format!("{prefix}:{op}"), "*")],
    };
    out.dedup();
    if out.is_empty() {
        out.push(Check::new(format!("{}:{op}", service.prefix()), "*"));
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

// ------------------------------------------------------------------------------------ SQS

/// `https://host/ACCOUNT/NAME` → (ACCOUNT, NAME).
fn queue_from_url(url: &str) -> Option<(&str, &str)> {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let mut segs = path.trim_matches('/').rsplit('/');
    let name = segs.next().filter(|s| !s.is_empty())?;
    let account = segs.next().filter(|s| !s.is_empty())?;
    Some((account, name))
}

fn sqs(op: &str, input: &Value, scope: Scope<'_>) -> Vec<Check> {
    // Batch operations authorize as their single-message action.
    let action = match op {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    };
    let queue = if let Some((account, name)) = str_of(input, "QueueUrl").and_then(queue_from_url) {
        Some(format!("arn:aws:sqs:{}:{account}:{name}", scope.region))
    } else {
        str_of(input, "QueueName").map(|name| {
            let account = str_of(input, "QueueOwnerAWSAccountId").unwrap_or(scope.account);
            format!("arn:aws:sqs:{}:{account}:{name}", scope.region)
        })
    };
    vec![Check::new(
        format!("sqs:{action}"),
        queue.unwrap_or_else(|| "*".to_owned()),
    )]
}

// ------------------------------------------------------------------------------- DynamoDB

fn table_arn(table: &str, scope: Scope<'_>) -> String {
    if table.starts_with("arn:") {
        table.to_owned()
    } else {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{table}",
            scope.region, scope.account
        )
    }
}

fn dynamodb(op: &str, input: &Value, scope: Scope<'_>) -> Vec<Check> {
    match op {
        "TransactWriteItems" | "TransactGetItems" => input
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, body) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    _ => return None,
                };
                let table = str_of(body, "TableName")?;
                Some(Check::new(
                    format!("dynamodb:{action}"),
                    table_arn(table, scope),
                ))
            })
            .collect(),
        // The batch APIs are their own IAM actions, authorized on every table they touch.
        "BatchWriteItem" | "BatchGetItem" => input
            .get("RequestItems")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(table, _)| Check::new(format!("dynamodb:{op}"), table_arn(table, scope)))
            .collect(),
        _ => {
            let resource = match (str_of(input, "TableName"), str_of(input, "IndexName")) {
                (Some(t), Some(i)) if matches!(op, "Query" | "Scan") => {
                    format!("{}/index/{i}", table_arn(t, scope))
                }
                (Some(t), _) => table_arn(t, scope),
                // ListTables, DescribeLimits, DescribeEndpoints, ...
                (None, _) => "*".to_owned(),
            };
            vec![Check::new(format!("dynamodb:{op}"), resource)]
        }
    }
}

// ---------------------------------------------------------------------------- EventBridge

fn bus_arn(bus: Option<&str>, scope: Scope<'_>) -> String {
    match bus {
        Some(b) if b.starts_with("arn:") => b.to_owned(),
        b => format!(
            "arn:aws:events:{}:{}:event-bus/{}",
            scope.region,
            scope.account,
            b.unwrap_or("default")
        ),
    }
}

/// Rules on the default bus are `rule/NAME`, on a custom bus `rule/BUS/NAME`.
fn rule_arn(name: &str, bus: Option<&str>, scope: Scope<'_>) -> String {
    let bus = bus.map(|b| b.rsplit('/').next().unwrap_or(b));
    match bus {
        Some(b) if b != "default" => format!(
            "arn:aws:events:{}:{}:rule/{b}/{name}",
            scope.region, scope.account
        ),
        _ => format!(
            "arn:aws:events:{}:{}:rule/{name}",
            scope.region, scope.account
        ),
    }
}

fn events(op: &str, input: &Value, scope: Scope<'_>) -> Vec<Check> {
    let action = format!("events:{op}");
    let bus = str_of(input, "EventBusName");
    match op {
        "PutEvents" => input
            .get("Entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                let mut c = Check::new(&action, bus_arn(str_of(e, "EventBusName"), scope));
                if let Some(s) = str_of(e, "Source") {
                    c = c.with("events:source", CtxValue::Str(s.to_owned()));
                }
                if let Some(d) = str_of(e, "DetailType") {
                    c = c.with("events:detail-type", CtxValue::Str(d.to_owned()));
                }
                c
            })
            .collect(),
        "PutRule" | "DeleteRule" | "DescribeRule" | "EnableRule" | "DisableRule" => {
            let name = str_of(input, "Name").unwrap_or("*");
            vec![Check::new(action, rule_arn(name, bus, scope))]
        }
        "PutTargets" | "RemoveTargets" | "ListTargetsByRule" => {
            let name = str_of(input, "Rule").unwrap_or("*");
            vec![Check::new(action, rule_arn(name, bus, scope))]
        }
        "CreateEventBus" | "DeleteEventBus" | "DescribeEventBus" | "UpdateEventBus" => {
            vec![Check::new(action, bus_arn(str_of(input, "Name"), scope))]
        }
        "PutPermission" | "RemovePermission" => vec![Check::new(action, bus_arn(bus, scope))],
        // ListRules, ListEventBuses, TestEventPattern, ...: no resource the reference names
        // unambiguously for this table.
        _ => vec![Check::new(action, "*")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        account: "123456789012",
    };

    fn one(service: Service, op: &str, input: Value) -> (String, String) {
        let c = checks(&service, op, &input, SCOPE);
        assert_eq!(c.len(), 1, "{c:?}");
        (c[0].action.clone(), c[0].resource.clone())
    }

    fn pair(a: &str, r: &str) -> (String, String) {
        (a.to_owned(), r.to_owned())
    }

    #[test]
    fn targets_and_scopes_name_the_service() {
        assert_eq!(
            Service::from_target("AmazonSQS.SendMessage", "sqs"),
            (Service::Sqs, "SendMessage")
        );
        assert_eq!(
            Service::from_target("DynamoDB_20120810.Query", "dynamodb"),
            (Service::DynamoDb, "Query")
        );
        assert_eq!(
            Service::from_target("AWSEvents.PutEvents", "events"),
            (Service::Events, "PutEvents")
        );
        assert_eq!(
            Service::from_target("Logs_20140328.PutLogEvents", "logs"),
            (Service::Other("logs".into()), "PutLogEvents")
        );
        assert_eq!(Service::from_scope("sqs"), Service::Sqs);
    }

    #[test]
    fn sqs_queue_arn_comes_from_the_url_or_the_name_and_batches_map_to_single_actions() {
        let q = "arn:aws:sqs:us-east-1:123456789012:work";
        let url = json!({ "QueueUrl": "http://127.0.0.1:5000/123456789012/work" });
        assert_eq!(
            one(Service::Sqs, "SendMessage", url.clone()),
            pair("sqs:SendMessage", q)
        );
        assert_eq!(
            one(Service::Sqs, "SendMessageBatch", url.clone()),
            pair("sqs:SendMessage", q)
        );
        assert_eq!(
            one(Service::Sqs, "DeleteMessageBatch", url.clone()),
            pair("sqs:DeleteMessage", q)
        );
        assert_eq!(
            one(Service::Sqs, "ChangeMessageVisibilityBatch", url.clone()),
            pair("sqs:ChangeMessageVisibility", q)
        );
        assert_eq!(
            one(Service::Sqs, "ReceiveMessage", url),
            pair("sqs:ReceiveMessage", q)
        );
        let other_account =
            json!({ "QueueUrl": "https://sqs.us-east-1.amazonaws.com/999999999999/x" });
        assert_eq!(
            one(Service::Sqs, "GetQueueAttributes", other_account),
            pair(
                "sqs:GetQueueAttributes",
                "arn:aws:sqs:us-east-1:999999999999:x"
            )
        );
        assert_eq!(
            one(Service::Sqs, "GetQueueUrl", json!({ "QueueName": "work" })),
            pair("sqs:GetQueueUrl", q)
        );
        assert_eq!(
            one(Service::Sqs, "CreateQueue", json!({ "QueueName": "work" })),
            pair("sqs:CreateQueue", q)
        );
        assert_eq!(
            one(Service::Sqs, "ListQueues", json!({})),
            pair("sqs:ListQueues", "*")
        );
    }

    #[test]
    fn dynamodb_tables_indexes_and_per_item_transaction_actions() {
        let t = "arn:aws:dynamodb:us-east-1:123456789012:table/state";
        assert_eq!(
            one(
                Service::DynamoDb,
                "PutItem",
                json!({ "TableName": "state" })
            ),
            pair("dynamodb:PutItem", t)
        );
        assert_eq!(
            one(
                Service::DynamoDb,
                "Query",
                json!({ "TableName": "state", "IndexName": "active" })
            ),
            pair("dynamodb:Query", &format!("{t}/index/active"))
        );
        assert_eq!(
            one(Service::DynamoDb, "Query", json!({ "TableName": "state" })),
            pair("dynamodb:Query", t)
        );
        assert_eq!(
            one(Service::DynamoDb, "GetItem", json!({ "TableName": t })),
            pair("dynamodb:GetItem", t)
        );
        assert_eq!(
            one(Service::DynamoDb, "ListTables", json!({})),
            pair("dynamodb:ListTables", "*")
        );
        let tx = json!({ "TransactItems": [
            { "Put": { "TableName": "state", "Item": {} } },
            { "Update": { "TableName": "state", "Key": {} } },
            { "ConditionCheck": { "TableName": "other", "Key": {} } },
            { "Delete": { "TableName": "state", "Key": {} } },
        ] });
        let got: Vec<_> = checks(&Service::DynamoDb, "TransactWriteItems", &tx, SCOPE)
            .into_iter()
            .map(|c| (c.action, c.resource))
            .collect();
        assert_eq!(
            got,
            vec![
                pair("dynamodb:PutItem", t),
                pair("dynamodb:UpdateItem", t),
                pair(
                    "dynamodb:ConditionCheckItem",
                    "arn:aws:dynamodb:us-east-1:123456789012:table/other"
                ),
                pair("dynamodb:DeleteItem", t),
            ]
        );
        let get = json!({ "TransactItems": [{ "Get": { "TableName": "state", "Key": {} } }] });
        assert_eq!(
            one(Service::DynamoDb, "TransactGetItems", get),
            pair("dynamodb:GetItem", t)
        );
        let batch =
            json!({ "RequestItems": { "state": [{ "PutRequest": { "Item": {} } }], "other": [] } });
        let mut got: Vec<_> = checks(&Service::DynamoDb, "BatchWriteItem", &batch, SCOPE)
            .into_iter()
            .map(|c| (c.action, c.resource))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                pair(
                    "dynamodb:BatchWriteItem",
                    "arn:aws:dynamodb:us-east-1:123456789012:table/other"
                ),
                pair("dynamodb:BatchWriteItem", t),
            ]
        );
    }

    #[test]
    fn put_events_checks_each_entry_on_its_bus_with_source_and_detail_type() {
        let input = json!({ "Entries": [
            { "Source": "flowpilot", "DetailType": "Workflow Failed", "EventBusName": "flowpilot-health", "Detail": "{}" },
            { "Source": "flowpilot.command", "DetailType": "Workflow Command", "Detail": "{}" },
            { "Source": "x", "DetailType": "y", "EventBusName": "arn:aws:events:us-east-1:123456789012:event-bus/other" },
        ] });
        let c = checks(&Service::Events, "PutEvents", &input, SCOPE);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].action, "events:PutEvents");
        assert_eq!(
            c[0].resource,
            "arn:aws:events:us-east-1:123456789012:event-bus/flowpilot-health"
        );
        assert_eq!(
            c[0].context["events:source"],
            CtxValue::Str("flowpilot".into())
        );
        assert_eq!(
            c[0].context["events:detail-type"],
            CtxValue::Str("Workflow Failed".into())
        );
        assert_eq!(
            c[1].resource,
            "arn:aws:events:us-east-1:123456789012:event-bus/default"
        );
        assert_eq!(
            c[2].resource,
            "arn:aws:events:us-east-1:123456789012:event-bus/other"
        );
    }

    #[test]
    fn events_rules_and_buses_and_unknown_operations() {
        assert_eq!(
            one(Service::Events, "PutRule", json!({ "Name": "r" })),
            pair(
                "events:PutRule",
                "arn:aws:events:us-east-1:123456789012:rule/r"
            )
        );
        assert_eq!(
            one(
                Service::Events,
                "PutTargets",
                json!({ "Rule": "r", "EventBusName": "health" })
            ),
            pair(
                "events:PutTargets",
                "arn:aws:events:us-east-1:123456789012:rule/health/r"
            )
        );
        assert_eq!(
            one(
                Service::Events,
                "CreateEventBus",
                json!({ "Name": "health" })
            ),
            pair(
                "events:CreateEventBus",
                "arn:aws:events:us-east-1:123456789012:event-bus/health"
            )
        );
        assert_eq!(
            one(Service::Events, "ListRules", json!({})),
            pair("events:ListRules", "*")
        );
        assert_eq!(
            one(
                Service::Other("logs".into()),
                "PutLogEvents",
                json!({ "logGroupName": "g" })
            ),
            pair("logs:PutLogEvents", "*")
        );
        // A PutEvents without entries still asks one question (so it is never unchecked).
        assert_eq!(
            one(Service::Events, "PutEvents", json!({})),
            pair("events:PutEvents", "*")
        );
    }
}
