#!/usr/bin/env python3
"""Deploy infra/flowpilot.yaml into a local moto server and print the stack outputs as JSON.

Used by `infra/local/stack up` and by the Rust test harness (tests/support). Runs with the
project virtualenv's interpreter (infra/local/.venv/bin/python), which has boto3.

With --health-tap it also creates the observation queue `flowpilot-health-tap` and a rule
on the health bus that copies every `source: flowpilot` event into it (moto enforces no
queue policies, so none is needed), and adds its URL to the output as `HealthTapUrl`.
"""

import argparse
import json
import os
import sys
import time

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
    p.add_argument("--desired-count", default="0", help="ECS worker replicas (local workers run as processes)")
    p.add_argument("--health-tap", action="store_true", help="also create the health tap queue and rule")
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
    with open(TEMPLATE, encoding="utf-8") as f:
        body = f.read()
    params = {
        "NamePrefix": args.name_prefix,
        "DomainName": args.domain,
        "DomainKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-4000-8000-000000000000",
        "WorkerImage": "flowpilot:local",
        "DesiredCount": args.desired_count,
        "SubnetIds": "subnet-00000000",
        "SecurityGroupIds": "sg-00000000",
    }
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


def main():
    args = parse_args()
    outputs = deploy(args)
    missing = [
        k
        for k in ("QueueUrl", "QueueArn", "DlqUrl", "TableName", "HealthBusName", "HealthBusArn", "AlertTopicArn", "AppFlowRoleArn")
        if k not in outputs
    ]
    if missing:
        sys.exit(f"stack outputs missing: {', '.join(missing)} (got {sorted(outputs)})")
    strip_unsupported_targets(args, outputs)
    # CloudFormation in moto reports AWS-style queue URLs; hand out the ones of this endpoint.
    sqs = client("sqs", args.endpoint)
    for key in ("QueueUrl", "DlqUrl"):
        outputs[key] = sqs.get_queue_url(QueueName=outputs[key].rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]
    if args.health_tap:
        outputs["HealthTapUrl"] = health_tap(args, outputs)
    json.dump(outputs, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
