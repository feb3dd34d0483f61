#!/usr/bin/env python3
"""Creates the template's tables and queues on the local emulators and writes the functions' env.

template.yaml is the single source of truth for tables and queues: instead of a second, hand-kept
list of resources for local runs, this script reads the template and creates every
AWS::DynamoDB::Table on DynamoDB Local and every AWS::SQS::Queue on moto, and every schedule
(AWS::Scheduler::Schedule, and the ScheduleV2 events of functions, as SAM turns them into one) in
moto's EventBridge Scheduler, where they are kept but never fire: the dev server runs the billing
run on request instead. It then resolves the environment variables each AWS::Serverless::Function
would get in AWS (Globals merged with the function's own) to their local values, and writes them,
together with the endpoint and credential variables the AWS SDKs read, to a shell file of
`export NAME='value'` lines. infra/deploy-localstack.sh checks all of this against the template
deployed by CloudFormation (on LocalStack).

Idempotent: existing tables and queues are kept (a queue's attributes are brought in line with the
template; a table gets missing GSIs and TTL added; a schedule is updated). Run by infra/stack.sh start with the venv's
Python (boto3 + PyYAML):

    bootstrap.py --template template.yaml --dynamodb-endpoint http://127.0.0.1:8000 \
        --moto-endpoint http://127.0.0.1:5000 --env-file infra/.local/dev/env

Parameters resolve to their Default, or to the value of the process environment variable with the
parameter's name (e.g. `LogLevel=DEBUG infra/stack.sh start`). Values are never printed: some
(e.g. BootstrapApiKeySha256) are secret-ish.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from typing import Any

import yaml

REGION = "us-east-1"
# moto's default account (--account-id changes it, e.g. to LocalStack's 000000000000); DynamoDB
# Local reports its own (000000000000) in table ARNs, which we take from describe_table rather
# than assume. Only the ARNs this script makes up (AWS::AccountId, IAM roles) use it.
ACCOUNT_ID = "123456789012"
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
WAIT_SECONDS = 30


class BootstrapError(Exception):
    pass


# --- Template loading -------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form intrinsic tags (!Ref, !Sub, ...)."""


def _construct_intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    # `suffix` is what follows the "!": Ref, GetAtt, Sub, If, ...
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # "Resource.Attr"; attribute names may themselves contain dots (Endpoint.Address).
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise BootstrapError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return template


# --- Intrinsic function resolution ------------------------------------------------------------

NO_VALUE = object()  # AWS::NoValue: the property or list item is dropped
LOCAL_TYPES = ("AWS::DynamoDB::Table", "AWS::SQS::Queue")  # what the emulators provide
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")  # the dev server runs them


class Stack:
    """The template's resources as they exist on the local emulators.

    Tables and queues are created lazily, the first time something refers to them (or when
    `ensure_all` gets to them), so a queue whose RedrivePolicy names another queue's ARN simply
    creates that other queue first: no explicit dependency sort is needed.
    """

    def __init__(self, template: dict[str, Any], dynamodb: Any, sqs: Any, scheduler: Any = None) -> None:
        self.template = template
        self.resources: dict[str, Any] = template["Resources"]
        self.parameters: dict[str, Any] = template.get("Parameters") or {}
        self.conditions: dict[str, Any] = template.get("Conditions") or {}
        self.dynamodb = dynamodb
        self.sqs = sqs
        self.scheduler = scheduler
        self.schedules: dict[str, dict[str, Any]] = {}  # schedule name -> create_schedule arguments
        self._created: dict[str, dict[str, str]] = {}  # logical id -> attributes (Ref, Arn, ...)
        self._in_progress: set[str] = set()
        self._param_values: dict[str, str] = {}
        self._condition_values: dict[str, bool] = {}
        self._evaluating_conditions: set[str] = set()

    # Parameters and conditions ---------------------------------------------------------------

    def parameter(self, name: str) -> str:
        if name in self._param_values:
            return self._param_values[name]
        spec = self.parameters[name] or {}
        secret = bool(spec.get("NoEcho"))
        if name in os.environ:
            value = os.environ[name]
            shown = "(hidden)" if secret else repr(value)
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [_scalar(v) for v in allowed]:
                raise BootstrapError(f"parameter {name}={shown} from the environment is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern is not None and not re.fullmatch(pattern, value):
                raise BootstrapError(f"parameter {name}={shown} from the environment does not match {pattern}")
        elif "Default" in spec:
            value = _scalar(spec["Default"])
        else:
            raise BootstrapError(f"parameter {name} has no Default: set the environment variable {name}")
        self._param_values[name] = value
        return value

    def condition(self, name: str) -> bool:
        if name in self._condition_values:
            return self._condition_values[name]
        if name not in self.conditions:
            raise BootstrapError(f"unknown condition {name}")
        if name in self._evaluating_conditions:
            raise BootstrapError(f"condition {name} refers to itself")
        self._evaluating_conditions.add(name)
        value = self.resolve(self.conditions[name])
        self._evaluating_conditions.discard(name)
        if not isinstance(value, bool):
            raise BootstrapError(f"condition {name} is not a boolean expression")
        self._condition_values[name] = value
        return value

    def resource_enabled(self, logical_id: str) -> bool:
        """False when the resource has a Condition that is false: it would not exist in AWS."""
        cond = self.resources[logical_id].get("Condition")
        return cond is None or self.condition(cond)

    # References ------------------------------------------------------------------------------

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "local",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/local/local",
            "AWS::NotificationARNs": [],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameter(name)
        if name in self.resources:
            return self.ensure(name)["Ref"]
        raise BootstrapError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise BootstrapError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        attrs = self.ensure(logical_id)
        if attribute not in attrs:
            raise BootstrapError(
                f"!GetAtt {logical_id}.{attribute}: not available locally (known: {', '.join(sorted(attrs))})"
            )
        return attrs[attribute]

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):  # ${!Literal} is the escape for a literal ${Literal}
                return "${" + inner[1:] + "}"
            if inner in variables:
                return _scalar(self.resolve(variables[inner]))
            if "." in inner and not inner.startswith("AWS::"):
                logical_id, attribute = inner.split(".", 1)
                return self.get_att(logical_id, attribute)
            return _scalar(self.ref(inner))

        return re.sub(r"\$\{([^}]*)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        """Evaluates intrinsic functions in `value`, recursively."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _function(self, name: str, arg: Any) -> Any:
        if name == "GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else self.resolve(arg)
            return self.get_att(parts[0], parts[1])
        if name == "Sub":
            if isinstance(arg, str):
                return self.sub(arg, {})
            return self.sub(self.resolve(arg[0]), arg[1])
        if name == "Join":
            delimiter, items = arg
            return self.resolve(delimiter).join(_scalar(v) for v in self.resolve(items))
        if name == "Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if name == "Split":
            delimiter, text = self.resolve(arg)
            return text.split(delimiter)
        if name == "If":
            cond, if_true, if_false = arg
            return self.resolve(if_true if self.condition(cond) else if_false)
        if name == "Equals":
            a, b = self.resolve(arg)
            return _scalar(a) == _scalar(b)
        if name == "Not":
            (inner,) = self.resolve(arg)
            return not inner
        if name == "And":
            return all(self.resolve(arg))
        if name == "Or":
            return any(self.resolve(arg))
        raise BootstrapError(f"intrinsic function Fn::{name} is not supported by infra/bootstrap.py")

    # Resources -------------------------------------------------------------------------------

    def ensure(self, logical_id: str) -> dict[str, str]:
        """Creates the resource if needed; returns its attributes (Ref, Arn, ...)."""
        from botocore.exceptions import ClientError

        if logical_id in self._created:
            return self._created[logical_id]
        if logical_id in self._in_progress:
            raise BootstrapError(f"resource {logical_id} depends on itself")
        resource = self.resources[logical_id]
        rtype = resource.get("Type")
        if not self.resource_enabled(logical_id):
            raise BootstrapError(f"{logical_id} is referred to but its Condition is false")
        self._in_progress.add(logical_id)
        try:
            depends_on = resource.get("DependsOn") or []
            for dependency in [depends_on] if isinstance(depends_on, str) else depends_on:
                if self.resources.get(dependency, {}).get("Type") in LOCAL_TYPES:
                    self.ensure(dependency)
            if rtype == "AWS::IAM::Role":
                # Nothing checks roles locally (moto's Scheduler stores the ARN as given): the
                # functions get the ARN the role would have.
                attrs = {"Ref": logical_id, "Arn": role_arn(logical_id)}
                self._created[logical_id] = attrs
                return attrs
            if rtype in FUNCTION_TYPES:
                # Not deployed locally (the dev server runs the handlers); what refers to one (a
                # schedule's target) gets the ARN it would have: its FunctionName, else
                # STACK-LogicalId (CloudFormation appends a random suffix to that).
                name = (resource.get("Properties") or {}).get("FunctionName")
                name = _scalar(self.resolve(name)) if name is not None else f"{self.ref('AWS::StackName')}-{logical_id}"
                attrs = {"Ref": name, "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"}
                self._created[logical_id] = attrs
                return attrs
            if rtype not in LOCAL_TYPES:
                raise BootstrapError(f"{logical_id} ({rtype}) has no local equivalent; only tables and queues do")
            properties = self.resolve(resource.get("Properties") or {})
            try:
                if rtype == "AWS::DynamoDB::Table":
                    attrs = self._ensure_table(logical_id, properties)
                else:
                    attrs = self._ensure_queue(logical_id, properties)
            except ClientError as e:  # say which resource the emulator refused
                raise BootstrapError(f"{logical_id}: {e}") from e
        finally:
            self._in_progress.discard(logical_id)
        self._created[logical_id] = attrs
        return attrs

    def ensure_all(self) -> None:
        # A parameter given in the environment is checked even if nothing local refers to it, so
        # a typo (LogLevel=DEBGU) is reported here rather than at deployment.
        for name in self.parameters:
            if name in os.environ:
                self.parameter(name)
        for logical_id, resource in self.resources.items():
            if resource.get("Type") in LOCAL_TYPES and self.resource_enabled(logical_id):
                self.ensure(logical_id)
        for name, args in self.schedule_arguments().items():
            self._ensure_schedule(name, args)

    # EventBridge Scheduler ---

    def schedule_arguments(self) -> dict[str, dict[str, Any]]:
        """create_schedule arguments of every schedule the template makes, by name.

        Template AWS::Scheduler::Schedule resources as they are; a function's ScheduleV2 event the
        way SAM translates it: a schedule named after the function and the event (unless Name is
        given), FlexibleTimeWindow OFF by default, targeting the function through a role SAM
        creates (FunctionEventRole; its ARN is made up here, as nothing assumes roles locally).
        """
        schedules: dict[str, dict[str, Any]] = {}
        for logical_id, resource in self.resources.items():
            if not self.resource_enabled(logical_id):
                continue
            if resource.get("Type") == "AWS::Scheduler::Schedule":
                props = self.resolve(resource.get("Properties") or {})
                props.setdefault("Name", logical_id)
                schedules[props["Name"]] = props
            elif resource.get("Type") == "AWS::Serverless::Function":
                events = (resource.get("Properties") or {}).get("Events") or {}
                for event_name, event in events.items():
                    if event.get("Type") != "ScheduleV2":
                        continue
                    props = self.resolve(event.get("Properties") or {})
                    schedules.update([_schedule_v2(logical_id, event_name, props, self.get_att(logical_id, "Arn"))])
        return schedules

    def _ensure_schedule(self, name: str, args: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        if self.scheduler is None:
            raise BootstrapError(f"schedule {name}: no Scheduler endpoint given")
        try:
            self.scheduler.create_schedule(**args)
            print(f"schedule {name}: created")
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConflictException":
                raise BootstrapError(f"schedule {name}: {e}") from e
            self.scheduler.update_schedule(**args)  # takes the whole definition, like create
            print(f"schedule {name}: exists (updated)")
        self.schedules[name] = args

    # DynamoDB ---

    def _ensure_table(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        from botocore.exceptions import ClientError

        name = props.get("TableName") or logical_id
        try:
            table = self.dynamodb.describe_table(TableName=name)["Table"]
            created = False
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            table = None
        if table is None:
            self.dynamodb.create_table(**_create_table_args(name, props))
            created = True
        else:
            self._update_table(name, props, table)
        table = self._wait_table_active(name)

        ttl = props.get("TimeToLiveSpecification") or {}
        if _truthy(ttl.get("Enabled")):
            current = self.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or current.get(
                "AttributeName"
            ) != ttl["AttributeName"]:
                self.dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )

        print(f"table {name}: {'created' if created else 'exists'}")
        attrs = {"Ref": name, "Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attrs["StreamArn"] = table["LatestStreamArn"]
        return attrs

    def _update_table(self, name: str, props: dict[str, Any], table: dict[str, Any]) -> None:
        """Brings an existing table (e.g. a persistent dev one) closer to the template.

        Adds GSIs the template gained since the table was created; anything DynamoDB can't change
        in place (key schema, LSIs) or that would lose data (dropping a GSI) is only reported.
        """
        if _key_schema(table["KeySchema"]) != _key_schema(props.get("KeySchema") or []):
            print(
                f"warning: table {name} exists with a different key schema than the template; "
                "delete it (infra/stack.sh stop, then remove its infra/.local/<stack>/ddb) to recreate it",
                file=sys.stderr,
            )
        existing = {g["IndexName"] for g in table.get("GlobalSecondaryIndexes") or []}
        wanted = {g["IndexName"]: g for g in _create_table_args(name, props).get("GlobalSecondaryIndexes", [])}
        definitions = {a["AttributeName"]: a for a in props.get("AttributeDefinitions") or []}
        for index_name, gsi in wanted.items():
            if index_name in existing:
                continue
            key_attrs = {k["AttributeName"] for k in gsi["KeySchema"]}
            print(f"table {name}: adding index {index_name}")
            self.dynamodb.update_table(
                TableName=name,
                AttributeDefinitions=[_attribute_definition(definitions[a]) for a in sorted(key_attrs)],
                GlobalSecondaryIndexUpdates=[{"Create": gsi}],
            )
            self._wait_table_active(name)  # DynamoDB creates one index at a time
        for index_name in sorted(existing - wanted.keys()):
            print(f"warning: table {name} has index {index_name} that the template no longer has", file=sys.stderr)

    def _wait_table_active(self, name: str) -> dict[str, Any]:
        # boto3's table_exists waiter polls every 20 s; DynamoDB Local is usually ready at once.
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            table = self.dynamodb.describe_table(TableName=name)["Table"]
            indexes = table.get("GlobalSecondaryIndexes") or []
            if table["TableStatus"] == "ACTIVE" and all(i.get("IndexStatus") == "ACTIVE" for i in indexes):
                return table
            if time.monotonic() > deadline:
                raise BootstrapError(f"table {name} not ACTIVE after {WAIT_SECONDS} s")
            time.sleep(0.1)

    # SQS ---

    def _ensure_queue(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        from botocore.exceptions import ClientError

        fifo = _truthy(props.get("FifoQueue"))
        name = props.get("QueueName") or logical_id
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"  # CloudFormation does the same for a generated FIFO queue name
        attributes = _queue_attributes(props)

        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise
            url = None
        if url is None:
            url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            print(f"queue {name}: created")
        else:
            # FifoQueue can only be given at creation; a mismatch there needs a new queue anyway.
            update = {k: v for k, v in attributes.items() if k != "FifoQueue"}
            current = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
            if "RedrivePolicy" not in attributes and current.get("Attributes", {}).get("RedrivePolicy"):
                update["RedrivePolicy"] = ""  # the template dropped it: remove it here too
            if update:
                self.sqs.set_queue_attributes(QueueUrl=url, Attributes=update)
            print(f"queue {name}: exists")

        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "QueueUrl": url, "Arn": arn, "QueueName": name}


def _create_table_args(name: str, props: dict[str, Any]) -> dict[str, Any]:
    """create_table arguments from the CloudFormation properties the emulator needs.

    SSESpecification, PointInTimeRecoverySpecification, Tags, ContributorInsights and the like
    change nothing about how the table behaves for the code under test, so they are left out.
    """
    billing_mode = props.get("BillingMode") or "PROVISIONED"
    args: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [_attribute_definition(a) for a in props["AttributeDefinitions"]],
        "KeySchema": _key_schema(props["KeySchema"]),
        "BillingMode": billing_mode,
    }

    def throughput(spec: dict[str, Any]) -> dict[str, Any] | None:
        if billing_mode != "PROVISIONED":
            return None
        pt = spec.get("ProvisionedThroughput") or {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        return {k: int(pt[k]) for k in ("ReadCapacityUnits", "WriteCapacityUnits")}

    def index(spec: dict[str, Any], with_throughput: bool) -> dict[str, Any]:
        projection = {"ProjectionType": spec["Projection"].get("ProjectionType", "ALL")}
        if spec["Projection"].get("NonKeyAttributes"):
            projection["NonKeyAttributes"] = list(spec["Projection"]["NonKeyAttributes"])
        out = {"IndexName": spec["IndexName"], "KeySchema": _key_schema(spec["KeySchema"]), "Projection": projection}
        if with_throughput and throughput(spec):
            out["ProvisionedThroughput"] = throughput(spec)
        return out

    if throughput(props):
        args["ProvisionedThroughput"] = throughput(props)
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = [index(g, True) for g in props["GlobalSecondaryIndexes"]]
    if props.get("LocalSecondaryIndexes"):
        args["LocalSecondaryIndexes"] = [index(i, False) for i in props["LocalSecondaryIndexes"]]
    stream = props.get("StreamSpecification") or {}
    if stream.get("StreamViewType"):
        args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return args


def role_arn(logical_id: str) -> str:
    """The ARN made up for a role of the template (nothing assumes roles locally)."""
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{logical_id}"


# ScheduleV2 event properties that go to the schedule itself, and those that go to its target.
SCHEDULE_V2_PROPERTIES = (
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "FlexibleTimeWindow",
    "Name",
    "GroupName",
    "State",
    "Description",
    "StartDate",
    "EndDate",
    "KmsKeyArn",
)
SCHEDULE_V2_TARGET_PROPERTIES = ("Input", "RetryPolicy", "RoleArn")


def _schedule_v2(function_id: str, event_name: str, props: dict[str, Any], function_arn: str) -> tuple[str, dict[str, Any]]:
    unknown = set(props) - set(SCHEDULE_V2_PROPERTIES) - set(SCHEDULE_V2_TARGET_PROPERTIES)
    if unknown:
        # Better no local schedule than one that differs from AWS's without saying so.
        raise BootstrapError(
            f"{function_id} event {event_name}: ScheduleV2 properties {sorted(unknown)} are not supported by infra/bootstrap.py"
        )
    args = {k: props[k] for k in SCHEDULE_V2_PROPERTIES if k in props}
    args.setdefault("Name", f"{function_id}{event_name}")
    args.setdefault("FlexibleTimeWindow", {"Mode": "OFF"})
    target = {
        "Arn": function_arn,
        "RoleArn": props.get("RoleArn") or role_arn(f"{function_id}{event_name}Role"),
    }
    if "Input" in props:
        target["Input"] = props["Input"]
    if "RetryPolicy" in props:
        target["RetryPolicy"] = {k: int(v) for k, v in props["RetryPolicy"].items()}
    args["Target"] = target
    return args["Name"], args


def _attribute_definition(a: dict[str, Any]) -> dict[str, str]:
    return {"AttributeName": a["AttributeName"], "AttributeType": a["AttributeType"]}


def _key_schema(keys: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in keys]


# CloudFormation property -> SQS attribute of the same name, all sent as strings.
QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "SqsManagedSseEnabled",
)


def _queue_attributes(props: dict[str, Any]) -> dict[str, str]:
    attributes = {k: _scalar(props[k]) for k in QUEUE_ATTRIBUTES if k in props}
    if attributes.get("FifoQueue") == "false":
        del attributes["FifoQueue"]  # SQS rejects FifoQueue=false on creation
    redrive = props.get("RedrivePolicy")
    if isinstance(redrive, str):  # CloudFormation also accepts it as a JSON string
        redrive = json.loads(redrive)
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": redrive["deadLetterTargetArn"], "maxReceiveCount": int(redrive["maxReceiveCount"])}
        )
    return attributes


def _scalar(value: Any) -> str:
    """A template scalar as CloudFormation turns it into a string (true -> "true", 5 -> "5")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise BootstrapError(f"expected a string, number or boolean, got {type(value).__name__}")


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# --- Function environment ---------------------------------------------------------------------


def function_environment(stack: Stack) -> dict[str, str]:
    """The variables the functions get, merged over all functions (they share one env file)."""
    globals_vars = (((stack.template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get(
        "Variables"
    ) or {}
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for logical_id, resource in stack.resources.items():
        if resource.get("Type") != "AWS::Serverless::Function" or not stack.resource_enabled(logical_id):
            continue
        own = (((resource.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {}
        # The function's own variables override same-named global ones, as in SAM.
        variables = {**stack.resolve(globals_vars), **stack.resolve(own)}
        for name, value in variables.items():
            value = _scalar(value)
            if name in merged and merged[name] != value:
                # Values are not shown: they may be secret.
                raise BootstrapError(
                    f"environment variable {name} differs between {origin[name]} and {logical_id}; "
                    "one local env file can't serve both"
                )
            merged[name] = value
            origin.setdefault(name, logical_id)
    return merged


def write_env_file(path: str, variables: dict[str, str]) -> None:
    lines = []
    for name, value in variables.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise BootstrapError(f"{name!r} is not a valid environment variable name")
        if value == "":
            # Not configured in the template (an empty parameter such as the Stripe secret): the
            # caller's environment may supply it, e.g. `STRIPE_SECRET_KEY=sk_test_... make dev`.
            lines.append(f'export {name}="${{{name}-}}"\n')
        else:
            lines.append(f"export {name}='" + value.replace("'", "'\\''") + "'\n")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Written to a temporary file and renamed, so a reader never sees half a file; mode 0600
    # because the values may include secrets.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".env.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --- Main -------------------------------------------------------------------------------------


def main() -> int:
    global ACCOUNT_ID
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", required=True, help="SAM/CloudFormation template (YAML)")
    parser.add_argument("--dynamodb-endpoint", required=True, help="DynamoDB Local URL, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--moto-endpoint", required=True, help="moto server URL (SQS, Scheduler), e.g. http://127.0.0.1:5000"
    )
    parser.add_argument("--env-file", required=True, help="shell file of export lines to write")
    parser.add_argument(
        "--account-id",
        default=ACCOUNT_ID,
        help=f"the emulator's account, for the ARNs made up here (default {ACCOUNT_ID}, moto's)",
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[0-9]{12}", args.account_id):
        parser.error(f"--account-id must be 12 digits: {args.account_id}")
    ACCOUNT_ID = args.account_id

    # Only the explicit local credentials below must be used: a developer's AWS_PROFILE or
    # ~/.aws/config must neither be read nor break the session (a missing profile is an error).
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(var, None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    import boto3  # imported here so `--help` stays fast
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=REGION, **CREDENTIALS)
    # Local servers answer at once or not at all: fail fast instead of retrying for minutes.
    config = Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
    dynamodb = session.client("dynamodb", endpoint_url=args.dynamodb_endpoint, config=config)
    sqs = session.client("sqs", endpoint_url=args.moto_endpoint, config=config)
    scheduler = session.client("scheduler", endpoint_url=args.moto_endpoint, config=config)

    try:
        stack = Stack(load_template(args.template), dynamodb, sqs, scheduler)
        stack.ensure_all()
        function_vars = function_environment(stack)
    except (BootstrapError, BotoCoreError, ClientError) as e:
        print(f"bootstrap.py: error: {e}", file=sys.stderr)
        return 1

    env = {
        # AWS_ENDPOINT_URL sends every service to moto; the service-specific variable, which the
        # SDKs prefer, sends DynamoDB to DynamoDB Local instead.
        "AWS_ENDPOINT_URL": args.moto_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": args.dynamodb_endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        # Without credentials from the environment the SDKs would probe the EC2 metadata
        # service, which costs seconds of timeouts off AWS.
        "AWS_EC2_METADATA_DISABLED": "true",
        # Webhook endpoints may be http:// on loopback here (a receiver on this machine); never
        # set in template.yaml, so deployed endpoints are https to public addresses only.
        "WEBHOOK_ALLOW_LOOPBACK_HTTP": "1",
    }
    for name, value in function_vars.items():
        if name in env and env[name] != value:
            print(f"bootstrap.py: error: function variable {name} clashes with the local stack's own", file=sys.stderr)
            return 1
        env[name] = value
    write_env_file(args.env_file, env)
    print(f"env file {args.env_file}: {', '.join(function_vars) or 'no function variables'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
