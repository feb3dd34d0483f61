#!/usr/bin/env python3
"""Reads back what CloudFormation deployed from template.yaml (on LocalStack) and checks that the
local bootstrap (infra/bootstrap.py) creates the same.

Run by infra/deploy-localstack.sh after `sam deploy`, with the SAM CLI's venv (boto3 and the SAM
translator), against one LocalStack holding both: the CloudFormation stack in DEPLOY_REGION, and
in bootstrap.py's region what `infra/stack.sh start` made of the template (so equal names, such
as a schedule's, do not collide).

It iterates over the CloudFormation resources the deployed template is made of (the SAM transform
of it, as LocalStack's CloudFormation made them), so a resource added to template.yaml is checked
without changing this file; a resource type it cannot read back fails the check, as does a
template property that it neither compares nor lists as not reproduced locally (with the reason).
Values that refer to other resources or to the stack (a queue URL in an environment variable, a
table ARN in a policy, the function a schedule targets) are compared through the template: the
template's expression, resolved with bootstrap.py's resolver, must give the deployed value when
fed the deployed resources, and bootstrap.py's value when fed the local ones.

Every check prints a line (ok / FAIL); the last line says how many passed and failed; the exit
status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import urllib.request
import zipfile
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import bootstrap  # noqa: E402
import samtemplate  # noqa: E402

LOCAL_REGION = bootstrap.REGION
ELF_MACHINES = {"x86_64": 0x3E, "arm64": 0xB7}  # e_machine of an ELF header, by Lambda architecture


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            self.say(f"ok    {what}")
        else:
            self.failed += 1
            self.say(f"FAIL  {what}" + (f"\n        {detail}" if detail else ""))
        return ok

    def equal(self, what: str, actual: Any, expected: Any) -> bool:
        return self.check(what, actual == expected, f"got      {_show(actual)}\n        expected {_show(expected)}")


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --- Template values, resolved symbolically -------------------------------------------------------


class Tokens(dict):
    """Attributes of a resource as placeholders: «Logical.Attribute»."""

    def __init__(self, logical_id: str) -> None:
        super().__init__()
        self.logical_id = logical_id

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"«{self.logical_id}.{key}»"


class SymbolicStack(bootstrap.Stack):
    """bootstrap.py's resolver, but every resource attribute and pseudo parameter stays a
    placeholder; parameters and conditions resolve to their values as bootstrap.py resolves them."""

    def __init__(self, template: dict[str, Any]) -> None:
        super().__init__(template, dynamodb=None, sqs=None)

    def ensure(self, logical_id: str) -> dict[str, str]:
        if logical_id not in self.resources:
            raise bootstrap.BootstrapError(f"no such resource {logical_id}")
        return Tokens(logical_id)

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::") and name != "AWS::NoValue":
            return f"«{name}»"
        return super().ref(name)


def fill(value: Any, tokens: dict[str, str], side: str) -> Any:
    """`value` with every placeholder replaced by its value on one side (deployed or local)."""
    if isinstance(value, list):
        return [fill(v, tokens, side) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, tokens, side) for k, v in value.items()}
    if isinstance(value, str) and "«" in value:
        for token, real in tokens.items():
            value = value.replace(token, real)
        if "«" in value:
            raise bootstrap.BootstrapError(f"{value}: no {side} value for this reference")
    return value


# --- The two sides ---------------------------------------------------------------------------------


class Deployed:
    """The CloudFormation stack as LocalStack reports it."""

    def __init__(self, session: Any, stack_name: str) -> None:
        self.session = session
        self.stack_name = stack_name
        self.cfn = session.client("cloudformation")
        self.stack = self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        self.resources = {
            r["LogicalResourceId"]: r
            for page in self.cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
            for r in page["StackResourceSummaries"]
        }

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def tokens(self) -> dict[str, str]:
        account = self.client("sts").get_caller_identity()["Account"]
        region = self.session.region_name
        values = {
            "«AWS::StackName»": self.stack_name,
            "«AWS::AccountId»": account,
            "«AWS::Region»": region,
            "«AWS::Partition»": "aws",
            "«AWS::URLSuffix»": "amazonaws.com",
            "«AWS::StackId»": self.stack["StackId"],
        }
        for logical_id, r in self.resources.items():
            physical = r.get("PhysicalResourceId") or ""
            values[f"«{logical_id}.Ref»"] = physical
            for attribute, value in self.attributes(r["ResourceType"], physical).items():
                values[f"«{logical_id}.{attribute}»"] = value
        return values

    def attributes(self, rtype: str, physical: str) -> dict[str, str]:
        if rtype == "AWS::DynamoDB::Table":
            table = self.client("dynamodb").describe_table(TableName=physical)["Table"]
            return {"Arn": table["TableArn"], **({"StreamArn": table["LatestStreamArn"]} if table.get("LatestStreamArn") else {})}
        if rtype == "AWS::SQS::Queue":
            arn = self.client("sqs").get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            return {"Arn": arn, "QueueUrl": physical, "QueueName": arn.rsplit(":", 1)[1]}
        if rtype == "AWS::IAM::Role":
            role = self.client("iam").get_role(RoleName=physical)["Role"]
            return {"Arn": role["Arn"], "RoleId": role["RoleId"]}
        if rtype == "AWS::Lambda::Function":
            return {"Arn": self.client("lambda").get_function_configuration(FunctionName=physical)["FunctionArn"]}
        return {}


class Local:
    """What infra/bootstrap.py made of the template on the same LocalStack (its region)."""

    def __init__(self, session: Any, template: dict[str, Any], env_file: str) -> None:
        self.session = session
        self.stack = bootstrap.Stack(
            template, session.client("dynamodb"), session.client("sqs"), session.client("scheduler")
        )
        # The same calls `infra/stack.sh start` made: idempotent, they find what it created.
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                self.stack.ensure_all()
            finally:
                sys.stdout = stdout
        self.env = read_env_file(env_file)

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def tokens(self, translated: dict[str, Any]) -> dict[str, str]:
        values = {f"«{name}»": bootstrap._scalar(self.stack.ref(name)) for name in
                  ("AWS::StackName", "AWS::AccountId", "AWS::Region", "AWS::Partition", "AWS::URLSuffix", "AWS::StackId")}
        for logical_id in self.stack.resources:
            if self.stack.resources[logical_id].get("Type") in bootstrap.LOCAL_TYPES + bootstrap.FUNCTION_TYPES + ("AWS::IAM::Role",):
                for attribute, value in self.stack.ensure(logical_id).items():
                    values[f"«{logical_id}.{attribute}»"] = value
        # Roles SAM generates (a function's, a schedule's): made up locally like the template's.
        for logical_id, resource in translated["Resources"].items():
            if resource["Type"] == "AWS::IAM::Role":
                values.setdefault(f"«{logical_id}.Arn»", bootstrap.role_arn(logical_id))
        return values


def read_env_file(path: str) -> dict[str, str]:
    """The variables of bootstrap.py's env file, as a shell that sources it sees them (without
    the caller's environment: an empty template value stays empty)."""
    import re
    import subprocess

    with open(path, encoding="utf-8") as f:
        names = re.findall(r"^export ([A-Za-z_][A-Za-z0-9_]*)=", f.read(), re.MULTILINE)
    script = '. "$0"; for n in "$@"; do printf "%s\\0%s\\0" "$n" "${!n}"; done'
    out = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "bash", "-c", script, path, *names],
                         check=True, capture_output=True, text=True).stdout.split("\0")
    return dict(zip(out[0:-1:2], out[1::2]))


# --- Per resource type -----------------------------------------------------------------------------

# Template properties of a type that bootstrap.py does not reproduce locally, and why. Any other
# property must be compared below, or the check fails.
NOT_LOCAL = {
    "AWS::DynamoDB::Table": {
        "SSESpecification": "encryption at rest changes nothing the code sees",
        "PointInTimeRecoverySpecification": "backups change nothing the code sees",
        "Tags": "tags change nothing the code sees",
    },
    "AWS::SQS::Queue": {"Tags": "tags change nothing the code sees"},
}


def table_shape(table: dict[str, Any], ttl: dict[str, Any] | None) -> dict[str, Any]:
    def index(i: dict[str, Any]) -> dict[str, Any]:
        projection = dict(i.get("Projection") or {"ProjectionType": "ALL"})
        if projection.get("NonKeyAttributes"):
            projection["NonKeyAttributes"] = sorted(projection["NonKeyAttributes"])
        return {"KeySchema": bootstrap._key_schema(i["KeySchema"]), "Projection": projection}

    billing = (table.get("BillingModeSummary") or {}).get("BillingMode") or table.get("BillingMode") or "PROVISIONED"
    stream = table.get("StreamSpecification") or {}
    return {
        "KeySchema": bootstrap._key_schema(table["KeySchema"]),
        "AttributeDefinitions": sorted(
            (bootstrap._attribute_definition(a) for a in table["AttributeDefinitions"]), key=lambda a: a["AttributeName"]
        ),
        "BillingMode": billing,
        "GlobalSecondaryIndexes": {i["IndexName"]: index(i) for i in table.get("GlobalSecondaryIndexes") or []},
        "LocalSecondaryIndexes": {i["IndexName"]: index(i) for i in table.get("LocalSecondaryIndexes") or []},
        "Stream": stream.get("StreamViewType") if stream.get("StreamEnabled", bool(stream)) else None,
        "TimeToLive": ttl,
    }


def check_table(r: Report, lid: str, props: dict[str, Any], deployed: Deployed, local: Local) -> None:
    compared = {"TableName", "KeySchema", "AttributeDefinitions", "BillingMode", "GlobalSecondaryIndexes",
                "LocalSecondaryIndexes", "StreamSpecification", "TimeToLiveSpecification", "ProvisionedThroughput"}
    check_coverage(r, lid, "AWS::DynamoDB::Table", props, compared)

    def read(client: Any, name: str) -> dict[str, Any]:
        table = client.describe_table(TableName=name)["Table"]
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        enabled = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        return table_shape(table, {"AttributeName": ttl.get("AttributeName"), "Enabled": True} if enabled else None)

    ttl_spec = props.get("TimeToLiveSpecification") or {}
    expected = table_shape(
        bootstrap._create_table_args("template", props),
        {"AttributeName": ttl_spec["AttributeName"], "Enabled": True} if bootstrap._truthy(ttl_spec.get("Enabled")) else None,
    )
    name, local_name = deployed.resources[lid]["PhysicalResourceId"], local.stack.ensure(lid)["Ref"]
    if "TableName" in props:
        r.equal(f"{lid}: deployed and local names are the template's", [name, local_name], [props["TableName"]] * 2)
    got = read(deployed.client("dynamodb"), name)
    here = read(local.client("dynamodb"), local_name)
    for key in expected:
        r.equal(f"{lid}: deployed {key} is the template's", got[key], expected[key])
        r.equal(f"{lid}: bootstrap's {key} is the deployed one", here[key], got[key])


# SQS attributes a CloudFormation property sets (same names), compared deployed vs local whether
# the template sets them or not (the defaults must agree too).
QUEUE_ATTRIBUTES = (
    "VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize", "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit",
    "SqsManagedSseEnabled", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "RedrivePolicy", "RedriveAllowPolicy",
)


def check_queue(r: Report, lid: str, props: dict[str, Any], deployed: Deployed, local: Local,
                arn_names: Callable[[str, str], str]) -> None:
    check_coverage(r, lid, "AWS::SQS::Queue", props, set(QUEUE_ATTRIBUTES) | {"QueueName"})

    def read(client: Any, url: str, side: str) -> dict[str, Any]:
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        out = {k: attrs[k] for k in QUEUE_ATTRIBUTES if k in attrs}
        if out.get("FifoQueue") == "false":
            del out["FifoQueue"]
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if out.get(key):
                policy = json.loads(out[key])
                if "deadLetterTargetArn" in policy:  # by logical id: the names differ by design
                    policy["deadLetterTargetArn"] = arn_names(policy["deadLetterTargetArn"], side)
                if "maxReceiveCount" in policy:
                    policy["maxReceiveCount"] = int(policy["maxReceiveCount"])
                out[key] = policy
            else:
                out.pop(key, None)
        return out

    if "QueueName" in props:
        names = [deployed.resources[lid]["PhysicalResourceId"].rsplit("/", 1)[-1], local.stack.ensure(lid)["QueueName"]]
        r.equal(f"{lid}: deployed and local names are the template's", names, [props["QueueName"]] * 2)
    got = read(deployed.client("sqs"), deployed.resources[lid]["PhysicalResourceId"], "deployed")
    here = read(local.client("sqs"), local.stack.ensure(lid)["Ref"], "local")
    expected = {k: v for k, v in bootstrap._queue_attributes(props).items()}
    if "RedrivePolicy" in expected:
        policy = json.loads(expected["RedrivePolicy"])
        policy["deadLetterTargetArn"] = arn_names(policy["deadLetterTargetArn"], "template")
        expected["RedrivePolicy"] = policy
    for key in sorted(set(got) | set(here) | set(expected)):
        if key in expected:
            r.equal(f"{lid}: deployed {key} is the template's", got.get(key), expected[key])
        r.equal(f"{lid}: bootstrap's {key} is the deployed one", here.get(key), got.get(key))


def check_coverage(r: Report, lid: str, rtype: str, props: dict[str, Any], compared: set[str]) -> None:
    unchecked = set(props) - compared - set(NOT_LOCAL.get(rtype, {}))
    r.check(f"{lid}: every property of the template is compared or known not to matter locally",
            not unchecked, f"not compared: {sorted(unchecked)} (teach check_deploy.py to compare them)")
    for prop in sorted(set(props) & set(NOT_LOCAL.get(rtype, {}))):
        r.say(f"--    {lid}: {prop} not reproduced locally: {NOT_LOCAL[rtype][prop]}")


# Lambda function properties and the GetFunctionConfiguration field that shows each.
FUNCTION_FIELDS = {
    "Runtime": "Runtime", "Architectures": "Architectures", "Handler": "Handler", "MemorySize": "MemorySize",
    "Timeout": "Timeout", "Role": "Role", "FunctionName": "FunctionName", "Description": "Description",
    "LoggingConfig": "LoggingConfig", "Environment": "Environment", "EphemeralStorage": "EphemeralStorage",
}


def check_function(r: Report, lid: str, symbolic: dict[str, Any], deployed: Deployed, local: Local,
                   dtokens: dict[str, str], ltokens: dict[str, str]) -> None:
    lam = deployed.client("lambda")
    physical = deployed.resources[lid]["PhysicalResourceId"]
    config = lam.get_function_configuration(FunctionName=physical)
    r.equal(f"{lid}: state", config.get("State"), "Active")
    unknown = set(symbolic) - set(FUNCTION_FIELDS) - {"Code", "Tags"}
    r.check(f"{lid}: every property of the template is compared", not unknown, f"not compared: {sorted(unknown)}")
    for prop, field in FUNCTION_FIELDS.items():
        if prop not in symbolic:
            continue
        expected = fill(symbolic[prop], dtokens, "deployed")
        actual = config.get(field)
        if prop == "FunctionName":
            actual = config["FunctionName"]
        if prop == "LoggingConfig":
            actual = {k: v for k, v in (actual or {}).items() if k in expected}
        if prop == "Environment":
            actual = {"Variables": (actual or {}).get("Variables") or {}}
        r.equal(f"{lid}: deployed {prop} is the template's", actual, expected)

    # The environment: bootstrap.py's env file has every variable, with its local value.
    variables = (symbolic.get("Environment") or {}).get("Variables") or {}
    for name, value in sorted(variables.items()):
        want = bootstrap._scalar(fill(value, ltokens, "local"))
        r.equal(f"{lid}: bootstrap's env file has {name} as the template resolves it locally", local.env.get(name), want)

    # The code: what was deployed is the binary `sam build` built, for the declared architecture.
    code = lam.get_function(FunctionName=physical)["Code"]
    try:
        with urllib.request.urlopen(code["Location"], timeout=30) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
        binary = archive.read("bootstrap")
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        r.check(f"{lid}: deployed code has a bootstrap", False, f"{code.get('Location')}: {e}")
        return
    arch = (config.get("Architectures") or ["x86_64"])[0]
    machine = int.from_bytes(binary[18:20], "little") if binary[:4] == b"\x7fELF" else None
    r.equal(f"{lid}: deployed bootstrap is an ELF executable for {arch}", machine, ELF_MACHINES.get(arch))


def check_role(r: Report, lid: str, symbolic: dict[str, Any], deployed: Deployed, dtokens: dict[str, str]) -> None:
    iam = deployed.client("iam")
    name = deployed.resources[lid]["PhysicalResourceId"]
    role = iam.get_role(RoleName=name)["Role"]
    unknown = set(symbolic) - {"AssumeRolePolicyDocument", "Policies", "ManagedPolicyArns", "Tags"}
    r.check(f"{lid}: every property of the template is compared", not unknown, f"not compared: {sorted(unknown)}")
    document = role["AssumeRolePolicyDocument"]
    expected_trust = _json(fill(symbolic.get("AssumeRolePolicyDocument"), dtokens, "deployed"))
    r.equal(f"{lid}: deployed trust policy is the template's", _json(document, expected_trust), expected_trust)
    expected = {p["PolicyName"]: _json(fill(p["PolicyDocument"], dtokens, "deployed")) for p in symbolic.get("Policies") or []}
    inline = {
        p: _json(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"], expected.get(p))
        for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
    }
    r.equal(f"{lid}: deployed inline policies are the template's", inline, expected)
    attached = sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"])
    r.equal(f"{lid}: deployed managed policies are the template's", attached,
            sorted(fill(symbolic.get("ManagedPolicyArns") or [], dtokens, "deployed")))


def _json(document: Any, expected: Any = None) -> Any:
    """A policy document as data (IAM may hand it back as a string). LocalStack's IAM adds a
    Version to a document given without one (SAM writes a schedule role's policy so): when the
    expected document has none, the Version is not compared."""
    if isinstance(document, str):
        import urllib.parse

        document = json.loads(urllib.parse.unquote(document))
    document = json.loads(json.dumps(document))
    if isinstance(expected, dict) and "Version" not in expected and isinstance(document, dict):
        document.pop("Version", None)
    return document


SCHEDULE_FIELDS = ("Name", "GroupName", "ScheduleExpression", "ScheduleExpressionTimezone", "FlexibleTimeWindow",
                   "State", "Description", "StartDate", "EndDate", "KmsKeyArn", "Target")


def schedule_shape(schedule: dict[str, Any]) -> dict[str, Any]:
    out = {k: schedule[k] for k in SCHEDULE_FIELDS if k in schedule}
    out.setdefault("GroupName", "default")
    out.setdefault("State", "ENABLED")
    target = dict(out.get("Target") or {})
    if "Input" in target:
        target["Input"] = json.loads(target["Input"])  # the same JSON, however it is spaced
    out["Target"] = target
    return out


def check_schedule(r: Report, lid: str, symbolic: dict[str, Any], deployed: Deployed, local: Local,
                   dtokens: dict[str, str], ltokens: dict[str, str]) -> None:
    unknown = set(symbolic) - set(SCHEDULE_FIELDS)
    r.check(f"{lid}: every property of the template is compared", not unknown, f"not compared: {sorted(unknown)}")
    name = symbolic.get("Name") or deployed.resources[lid]["PhysicalResourceId"]
    group = symbolic.get("GroupName") or "default"
    got = schedule_shape(deployed.client("scheduler").get_schedule(Name=name, GroupName=group))
    expected = schedule_shape(fill(symbolic, dtokens, "deployed"))
    for key in sorted(set(got) | set(expected)):
        r.equal(f"{lid}: deployed {key} is the template's", got.get(key), expected.get(key))
    try:
        here = schedule_shape(local.client("scheduler").get_schedule(Name=name, GroupName=group))
    except Exception as e:  # noqa: BLE001 - reported as the failure it is
        r.check(f"{lid}: bootstrap created schedule {name}", False, str(e))
        return
    want_local = schedule_shape(fill(symbolic, ltokens, "local"))
    for key in sorted(set(here) | set(want_local)):
        if key == "Target":
            # The role is made up locally (nothing assumes roles there): compared by name only.
            for t in (here, want_local):
                t[key] = {**t[key], "RoleArn": t[key].get("RoleArn", "").rsplit("/", 1)[-1]}
        r.equal(f"{lid}: bootstrap's {key} is the template's, resolved locally", here.get(key), want_local.get(key))


def check_event_source_mapping(r: Report, lid: str, symbolic: dict[str, Any], deployed: Deployed,
                               dtokens: dict[str, str]) -> None:
    mapping = deployed.client("lambda").get_event_source_mapping(UUID=deployed.resources[lid]["PhysicalResourceId"])
    expected = fill(symbolic, dtokens, "deployed")
    known = {"EventSourceArn", "FunctionName", "BatchSize", "FunctionResponseTypes", "Enabled",
             "MaximumBatchingWindowInSeconds", "ScalingConfig", "FilterCriteria"}
    unknown = set(expected) - known
    r.check(f"{lid}: every property of the template is compared", not unknown, f"not compared: {sorted(unknown)}")
    for key in sorted(set(expected) & known):
        if key == "FunctionName":
            r.check(f"{lid}: deployed mapping invokes {expected[key]}",
                    mapping["FunctionArn"].rsplit(":", 1)[-1] == expected[key].rsplit(":", 1)[-1],
                    f"got {mapping['FunctionArn']}")
        elif key == "Enabled":
            r.equal(f"{lid}: deployed mapping state", mapping.get("State"), "Enabled" if expected[key] else "Disabled")
        else:
            r.equal(f"{lid}: deployed {key} is the template's", mapping.get(key), expected[key])
    r.say(f"--    {lid}: no local counterpart: the dev server polls the queue and calls the handler itself")


def check_permission(r: Report, lid: str, symbolic: dict[str, Any], deployed: Deployed, dtokens: dict[str, str]) -> None:
    expected = fill(symbolic, dtokens, "deployed")
    policy = json.loads(deployed.client("lambda").get_policy(FunctionName=expected["FunctionName"])["Policy"])
    found = [
        s for s in policy.get("Statement", [])
        if s.get("Action") == expected.get("Action")
        and expected.get("Principal") in json.dumps(s.get("Principal"))
        and (not expected.get("SourceArn") or expected["SourceArn"] in json.dumps(s.get("Condition")))
    ]
    r.check(f"{lid}: the function's resource policy allows {expected.get('Principal')}", bool(found), _show(policy))


# --- Main ------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", required=True, help="the template deployed (before the SAM transform)")
    parser.add_argument("--original", required=True, help="template.yaml, as bootstrap.py reads it")
    parser.add_argument("--left-out", required=True, help="samtemplate.py's report of what was not deployed")
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--deploy-region", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--env-file", required=True, help="bootstrap.py's env file of the same LocalStack")
    parser.add_argument("--account-id", required=True, help="as given to bootstrap.py")
    parser.add_argument("--parameter", action="append", default=[], help="NAME=VALUE, as deployed")
    parser.add_argument("--report", help="also write the lines here")
    args = parser.parse_args()

    import boto3

    parameters = samtemplate.parse_parameters(args.parameter)
    os.environ.update(parameters)  # bootstrap.py resolves a parameter from the variable of its name
    bootstrap.ACCOUNT_ID = args.account_id
    credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL_")]:
        del os.environ[var]
    deploy_session = boto3.session.Session(region_name=args.deploy_region, **credentials)
    local_session = boto3.session.Session(region_name=LOCAL_REGION, **credentials)

    r = Report()
    with open(args.left_out, encoding="utf-8") as f:
        for entry in json.load(f):
            also = f" (with it: {', '.join(entry['also_left_out'])})" if entry["also_left_out"] else ""
            r.say(f"--    LEFT OUT {entry['resource']} ({entry['type']}): {entry['why']}{also}")

    deployed = Deployed(deploy_session, args.stack_name)
    r.equal(f"stack {args.stack_name}: status", deployed.stack["StackStatus"], "CREATE_COMPLETE")
    template = bootstrap.load_template(args.template)
    translated = samtemplate.translate(template, parameters)
    symbolic = SymbolicStack(translated)
    wanted = {lid for lid in translated["Resources"] if symbolic.resource_enabled(lid)}
    r.equal("every resource of the template was deployed (by logical id)", sorted(deployed.resources), sorted(wanted))
    for lid, res in sorted(deployed.resources.items()):
        r.equal(f"{lid}: {res['ResourceType']} status", res["ResourceStatus"], "CREATE_COMPLETE")

    local = Local(local_session, bootstrap.load_template(args.original), args.env_file)
    dtokens, ltokens = deployed.tokens(), local.tokens(translated)

    def arn_names(arn: str, side: str) -> str:
        """A queue ARN (or a template placeholder for one) as the logical id it belongs to."""
        if arn.startswith("«"):
            return arn.split(".", 1)[0].lstrip("«")
        table = dtokens if side == "deployed" else ltokens
        for token, value in table.items():
            if value == arn and token.endswith(".Arn»"):
                return token.split(".", 1)[0].lstrip("«")
        return arn

    readers = {
        "AWS::DynamoDB::Table": lambda lid, props: check_table(r, lid, symbolic.resolve(props), deployed, local),
        "AWS::SQS::Queue": lambda lid, props: check_queue(r, lid, symbolic.resolve(props), deployed, local, arn_names),
        "AWS::Lambda::Function": lambda lid, props: check_function(r, lid, symbolic.resolve(props), deployed, local, dtokens, ltokens),
        "AWS::IAM::Role": lambda lid, props: check_role(r, lid, symbolic.resolve(props), deployed, dtokens),
        "AWS::Scheduler::Schedule": lambda lid, props: check_schedule(r, lid, symbolic.resolve(props), deployed, local, dtokens, ltokens),
        "AWS::Lambda::EventSourceMapping": lambda lid, props: check_event_source_mapping(r, lid, symbolic.resolve(props), deployed, dtokens),
        "AWS::Lambda::Permission": lambda lid, props: check_permission(r, lid, symbolic.resolve(props), deployed, dtokens),
    }
    for lid in sorted(wanted & set(deployed.resources)):
        resource = translated["Resources"][lid]
        reader = readers.get(resource["Type"])
        if reader is None:
            r.check(f"{lid}: {resource['Type']} read back", False, "check_deploy.py cannot read this type back yet")
            continue
        try:
            reader(lid, resource.get("Properties") or {})
        except Exception as e:  # noqa: BLE001 - one resource's error is that resource's failure
            r.check(f"{lid}: read back", False, f"{type(e).__name__}: {e}")

    # bootstrap.py gives the functions no variable that no deployed function has (each deployed
    # one was checked above); what else its env file sets is the local stack's own.
    function_vars: set[str] = set()
    for lid, resource in translated["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function" and lid in deployed.resources:
            function_vars |= set(((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {})
    local_vars = set(bootstrap.function_environment(local.stack))
    r.equal("bootstrap's function variables are exactly the deployed functions'", sorted(local_vars), sorted(function_vars))
    r.say(f"--    the env file's own (local stack) variables: {', '.join(sorted(set(local.env) - local_vars))}")

    r.say(f"deploy check: {r.passed} passed, {r.failed} failed")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write("\n".join(r.lines) + "\n")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
