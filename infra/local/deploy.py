#!/usr/bin/env python3
"""Deploy infra/flowpilot.yaml into a local moto server and print the stack outputs as JSON.

Used by `infra/local/stack up` and by the Rust test harness (tests/e2e). Runs with the
project virtualenv's interpreter (infra/local/.venv/bin/python), which has boto3.

With --health-tap it also creates the observation queue `flowpilot-health-tap` and a rule
on the health bus that copies every `source: flowpilot` event into it (moto enforces no
queue policies, so none is needed), and adds its URL to the output as `HealthTapUrl`.

With --worker-mode lambda it deploys the template's Lambda mode: first it puts a placeholder
function zip into moto's S3 (CloudFormation needs the code object to exist; moto never runs it),
and after the deploy it deletes the event source mapping, because moto would otherwise run the
function itself (in Docker) on every SendMessage: the tests play the mapping instead.

Every resource the template creates in the chosen mode that moto did not create (types moto's
CloudFormation does not model, which it skips while still reporting CREATE_COMPLETE) or that
this script removed is listed in the output as `NotCreated` (logical id, type, reason) and on
stderr: nothing is dropped silently. `Created` lists the logical ids the stack has.

With --state-dir DIR it also sets up the identities of the local account, the way AWS
convention has them, and writes into DIR:
- `iam.json`: the identity document the simulator enforces IAM with (POST /_sim/iam): the
  policies and trust policies of every role the stack created, read back from moto, plus
  the local operator role and two base identities below;
- `aws-config` / `aws-credentials` (for AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE) with
  the profiles `flowpilot-admin` (an IAM user allowed everything: the account
  administrator), `flowpilot-worker` (the deployed worker role, assumed through STS the way
  ECS or Lambda assumes it: the source identity `flowpilot-ecs-agent` stands for the service
  principal ecs-tasks.amazonaws.com, `flowpilot-lambda-agent` for lambda.amazonaws.com, and
  the worker mode picks one, so the role's real trust policy is evaluated) and
  `flowpilot-operator` (a local role with the stack's OperatorPolicy attached, assumed by the
  administrator: what a person running the CLI holds).
"""

import argparse
import ast
import io
import json
import os
import secrets
import string
import sys
import time
import zipfile

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "flowpilot.yaml")
REGION = "us-east-1"
# moto's default account; anything 12-digit works for the key ARN parameter.
ACCOUNT = "123456789012"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5000")
    p.add_argument("--stack-name", default="flowpilot")
    p.add_argument("--name-prefix", default="flowpilot")
    p.add_argument("--domain", default="demo")
    p.add_argument("--worker-mode", choices=("ecs", "lambda"), default="ecs", help="the template's WorkerMode")
    p.add_argument("--health-tap", action="store_true", help="also create the health tap queue and rule")
    p.add_argument("--template", default=TEMPLATE, help="template to deploy (YAML or JSON; default infra/flowpilot.yaml)")
    p.add_argument("--state-dir", help="write iam.json, aws-config and aws-credentials here")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for CREATE_COMPLETE")
    return p.parse_args()


def client(name, endpoint):
    return boto3.client(
        name,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def deploy(args):
    cfn = client("cloudformation", args.endpoint)
    with open(args.template, encoding="utf-8") as f:
        body = f.read()
    params = stack_parameters(args)
    if args.worker_mode == "lambda":
        put_placeholder_code(args, params)
    cfn.create_stack(
        StackName=args.stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + args.timeout
    while True:
        stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            break
        if not status.endswith("_IN_PROGRESS"):
            events = cfn.describe_stack_events(StackName=args.stack_name)["StackEvents"]
            reasons = [
                f'{e["LogicalResourceId"]}: {e.get("ResourceStatusReason", "")}'
                for e in events
                if e.get("ResourceStatus", "").endswith("FAILED")
            ]
            sys.exit(f"stack {args.stack_name} ended in {status}: {'; '.join(reasons)}")
        if time.monotonic() > deadline:
            sys.exit(f"stack {args.stack_name} still {status} after {args.timeout}s")
        time.sleep(0.1)
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_parameters(args):
    """The parameters of a local deployment (moto runs no ECS task: the local workers are
    processes, whatever MinTasks says)."""
    params = {
        "NamePrefix": args.name_prefix,
        "DomainName": args.domain,
        "DomainKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-4000-8000-000000000000",
        "WorkerMode": args.worker_mode,
    }
    if args.worker_mode == "ecs":
        params.update({"WorkerImage": "flowpilot:local", "SubnetIds": "subnet-00000000", "SecurityGroupIds": "sg-00000000"})
    else:
        params.update({"LambdaCodeBucket": f"{args.name_prefix}-artifacts", "LambdaCodeKey": "flowpilot-lambda.zip"})
    return params


def put_placeholder_code(args, params):
    """What an operator uploads before deploying the lambda mode (README, Packaging); here a
    zip whose `bootstrap` only says it is a placeholder: moto stores the code, never runs it."""
    s3 = client("s3", args.endpoint)
    bucket = params["LambdaCodeBucket"]
    s3.create_bucket(Bucket=bucket)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\necho 'placeholder: build the real bootstrap (README, Packaging)' >&2\nexit 1\n")
    s3.put_object(Bucket=bucket, Key=params["LambdaCodeKey"], Body=buf.getvalue())


# Why moto leaves out a resource type the template uses (moto 5.2.5; see
# docs of the local world: shared reference notes on moto).
UNMODELLED = {
    "AWS::SQS::QueuePolicy": "moto's CloudFormation does not model queue policies (and moto enforces none)",
    "AWS::CloudWatch::Alarm": "moto's CloudFormation does not model CloudWatch alarms",
    "AWS::SNS::TopicPolicy": "moto's CloudFormation does not model topic policies",
    "AWS::ApplicationAutoScaling::ScalableTarget": "moto's CloudFormation does not model Application Auto Scaling",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "moto's CloudFormation does not model Application Auto Scaling",
    "AWS::Scheduler::Schedule": "moto's CloudFormation does not model EventBridge Scheduler",
}


def condition_holds(template, name, params, seen=()):
    """Evaluates a template condition (Fn::Equals / Not / And / Or over parameters and other
    conditions), with the template's defaults for parameters not passed."""
    if name in seen:
        sys.exit(f"condition {name} refers to itself")
    return evaluate(template, template["Conditions"][name], params, seen + (name,))


def evaluate(template, node, params, seen):
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            if arg in params:
                return params[arg]
            return str(template["Parameters"][arg].get("Default", ""))
        if fn == "Condition":
            return condition_holds(template, arg, params, seen)
        if fn == "Fn::Equals":
            a, b = (evaluate(template, x, params, seen) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not evaluate(template, arg[0], params, seen)
        if fn == "Fn::And":
            return all(evaluate(template, x, params, seen) for x in arg)
        if fn == "Fn::Or":
            return any(evaluate(template, x, params, seen) for x in arg)
        sys.exit(f"deploy.py cannot evaluate {fn} in a condition")
    return node


def not_created(args, params):
    """Resources of the template whose condition holds but that the stack does not have."""
    template = load_template(args.template)
    cfn = client("cloudformation", args.endpoint)
    have = {r["LogicalResourceId"] for r in cfn.list_stack_resources(StackName=args.stack_name)["StackResourceSummaries"]}
    missing = []
    for logical_id, resource in template["Resources"].items():
        condition = resource.get("Condition")
        if condition and not condition_holds(template, condition, params):
            continue
        if logical_id not in have:
            kind = resource["Type"]
            missing.append({
                "LogicalResourceId": logical_id,
                "ResourceType": kind,
                "Reason": UNMODELLED.get(kind, "moto skipped it without saying why (not a type listed in deploy.py)"),
            })
    return missing


def load_template(path):
    """The template as JSON, short-form tags in long form (cfn-lint's own loader)."""
    from cfnlint.decode import decode
    template, matches = decode(path)
    if matches:
        sys.exit(f"cannot read {path}: {matches}")
    return template


def remove_event_source_mappings(args):
    """moto's SQS runs the function of a queue's event source mapping itself (in Docker) on
    every SendMessage, and makes the batch visible again when that fails, which would push
    every work-queue message to the DLQ: delete the mapping; the tests play it (tests/e2e/lambda.rs)."""
    lam = client("lambda", args.endpoint)
    removed = []
    for m in lam.list_event_source_mappings()["EventSourceMappings"]:
        lam.delete_event_source_mapping(UUID=m["UUID"])
        removed.append(m["UUID"])
    return removed


def strip_unsupported_targets(args, outputs):
    """moto's EventBridge delivers only to SQS, Logs and event-bus targets: a matching event
    for any other target (here the alert rule's SNS topic) makes PutEvents answer HTTP 500
    for the whole call, and disabling the rule does not help. Remove such targets; the
    rules themselves stay, so the deployed shape is still checked."""
    events = client("events", args.endpoint)
    for bus in ("default", outputs["HealthBusName"]):
        for rule in events.list_rules(EventBusName=bus)["Rules"]:
            targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
            drop = [t["Id"] for t in targets if t["Arn"].split(":")[2] not in ("sqs", "logs", "events")]
            if drop:
                events.remove_targets(Rule=rule["Name"], EventBusName=bus, Ids=drop)
                print(f"deploy.py: moto cannot deliver to {drop} of rule {rule['Name']}: removed", file=sys.stderr)


def health_tap(args, outputs):
    sqs = client("sqs", args.endpoint)
    events = client("events", args.endpoint)
    tap_name = f"{args.name_prefix}-health-tap"
    url = sqs.create_queue(QueueName=tap_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = outputs["HealthBusName"]
    events.put_rule(
        Name=tap_name,
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["flowpilot"]}),
        State="ENABLED",
    )
    events.put_targets(Rule=tap_name, EventBusName=bus, Targets=[{"Id": "health-tap", "Arn": arn}])
    return url


ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def fake_key(prefix):
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(16))


def fake_secret():
    return secrets.token_urlsafe(30)[:40]


def policy_document(doc):
    """moto answers inline policies created by CloudFormation as the Python repr of the
    document (single quotes), the others as JSON or a decoded dict: accept all three."""
    if isinstance(doc, str):
        try:
            return json.loads(doc)
        except json.JSONDecodeError:
            return ast.literal_eval(doc)
    return doc


def role_doc(iam, name):
    """A role as the simulator evaluates it: trust policy, inline and attached policies."""
    role = iam.get_role(RoleName=name)["Role"]
    policies = []
    for pname in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]
        policies.append({"name": pname, "document": policy_document(doc)})
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        pol = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=pol["Arn"], VersionId=pol["DefaultVersionId"])
        policies.append({"name": attached["PolicyName"], "document": policy_document(version["PolicyVersion"]["Document"])})
    return {
        "arn": role["Arn"],
        "trust_policy": policy_document(role["AssumeRolePolicyDocument"]),
        "policies": policies,
        "max_session_seconds": role.get("MaxSessionDuration", 3600),
    }


def identities(args, outputs):
    """Creates the local identities (see the module doc) and writes the three files."""
    iam = client("iam", args.endpoint)
    cfn = client("cloudformation", args.endpoint)
    admin_name = f"{args.name_prefix}-local-admin"
    admin = iam.create_user(UserName=admin_name)["User"]
    iam.put_user_policy(UserName=admin_name, PolicyName="administrator", PolicyDocument=json.dumps(ADMIN_POLICY))
    key = iam.create_access_key(UserName=admin_name)["AccessKey"]
    operator_name = f"{args.name_prefix}-local-operator"
    trust_account = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}],
    }
    iam.create_role(RoleName=operator_name, AssumeRolePolicyDocument=json.dumps(trust_account))
    iam.attach_role_policy(RoleName=operator_name, PolicyArn=outputs["OperatorPolicyArn"])

    resources = cfn.list_stack_resources(StackName=args.stack_name)["StackResourceSummaries"]
    role_names = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::IAM::Role"]
    roles = [role_doc(iam, n.rsplit("/", 1)[-1]) for n in role_names]
    roles.append(role_doc(iam, operator_name))
    ecs_key, ecs_secret = fake_key("AKIA"), fake_secret()
    lambda_key, lambda_secret = fake_key("AKIA"), fake_secret()
    doc = {
        "account_id": ACCOUNT,
        "users": [{
            "arn": admin["Arn"],
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
            "policies": [{"name": "administrator", "document": ADMIN_POLICY}],
        }],
        "services": [
            {"service": "ecs-tasks.amazonaws.com", "access_key_id": ecs_key, "secret_access_key": ecs_secret},
            {"service": "lambda.amazonaws.com", "access_key_id": lambda_key, "secret_access_key": lambda_secret},
        ],
        "roles": roles,
    }
    operator_arn = iam.get_role(RoleName=operator_name)["Role"]["Arn"]
    os.makedirs(args.state_dir, exist_ok=True)
    paths = {
        "IamFile": os.path.join(args.state_dir, "iam.json"),
        "AwsConfigFile": os.path.join(args.state_dir, "aws-config"),
        "AwsCredentialsFile": os.path.join(args.state_dir, "aws-credentials"),
    }
    write_private(paths["IamFile"], json.dumps(doc, indent=2) + "\n")
    write_private(paths["AwsConfigFile"], f"""# Written by infra/local/deploy.py for the local stack (AWS_CONFIG_FILE).
[profile flowpilot-admin]
region = {REGION}

[profile flowpilot-ecs-agent]
region = {REGION}

[profile flowpilot-lambda-agent]
region = {REGION}

[profile flowpilot-worker]
role_arn = {outputs["WorkerRoleArn"]}
source_profile = flowpilot-{"lambda" if args.worker_mode == "lambda" else "ecs"}-agent
role_session_name = flowpilot-worker-local
region = {REGION}

[profile flowpilot-operator]
role_arn = {operator_arn}
source_profile = flowpilot-admin
role_session_name = flowpilot-operator-local
region = {REGION}
""")
    write_private(paths["AwsCredentialsFile"], f"""# Written by infra/local/deploy.py for the local stack (AWS_SHARED_CREDENTIALS_FILE).
[flowpilot-admin]
aws_access_key_id = {key["AccessKeyId"]}
aws_secret_access_key = {key["SecretAccessKey"]}

[flowpilot-ecs-agent]
aws_access_key_id = {ecs_key}
aws_secret_access_key = {ecs_secret}

[flowpilot-lambda-agent]
aws_access_key_id = {lambda_key}
aws_secret_access_key = {lambda_secret}
""")
    paths["OperatorRoleArn"] = operator_arn
    paths["AdminAccessKeyId"] = key["AccessKeyId"]
    return paths


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


REQUIRED_OUTPUTS = (
    "QueueUrl", "QueueArn", "DlqUrl", "DeliveryDlqUrl", "TableName", "HealthBusName", "HealthBusArn",
    "AlertTopicArn", "WorkerRoleArn", "OperatorPolicyArn", "AppFlowExecutionRoleArn",
)


def main():
    args = parse_args()
    outputs = deploy(args)
    params = stack_parameters(args)
    missing = not_created(args, params)
    if args.worker_mode == "lambda":
        for uuid in remove_event_source_mappings(args):
            print(f"deploy.py: removed event source mapping {uuid}: moto would run the function itself", file=sys.stderr)
        missing += [
            {
                "LogicalResourceId": logical_id,
                "ResourceType": kind,
                "Reason": "created, then removed by deploy.py: moto would run the function in Docker on every SendMessage; the tests play the mapping",
            }
            for logical_id, r in load_template(args.template)["Resources"].items()
            if (kind := r["Type"]) == "AWS::Lambda::EventSourceMapping"
            and logical_id not in {m["LogicalResourceId"] for m in missing}
        ]
    for m in missing:
        print(f"deploy.py: not in moto: {m['LogicalResourceId']} ({m['ResourceType']}): {m['Reason']}", file=sys.stderr)
    outputs["NotCreated"] = missing
    cfn = client("cloudformation", args.endpoint)
    outputs["Created"] = sorted(
        r["LogicalResourceId"] for r in cfn.list_stack_resources(StackName=args.stack_name)["StackResourceSummaries"]
    )
    missing = [k for k in REQUIRED_OUTPUTS if k not in outputs]
    if missing:
        sys.exit(f"stack outputs missing: {', '.join(missing)} (got {sorted(outputs)})")
    strip_unsupported_targets(args, outputs)
    # CloudFormation in moto reports AWS-style queue URLs; hand out the ones of this endpoint.
    sqs = client("sqs", args.endpoint)
    for key in ("QueueUrl", "DlqUrl", "DeliveryDlqUrl"):
        outputs[key] = sqs.get_queue_url(QueueName=outputs[key].rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]
    if args.health_tap:
        outputs["HealthTapUrl"] = health_tap(args, outputs)
    if args.state_dir:
        outputs.update(identities(args, outputs))
    json.dump(outputs, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
