"""template.yaml as CloudFormation will see it, and the part of it LocalStack's can take.

Used by infra/deploy-localstack.sh through its two commands (run with the SAM CLI's venv, which
has the SAM translator that LocalStack's CloudFormation also uses, and boto3):

    samtemplate.py for-localstack --template template.yaml --providers FILE --out DERIVED.json \
        --report LEFT_OUT.json [--parameter NAME=VALUE ...]

writes the template to deploy on LocalStack: template.yaml without the SAM resources that turn
into a CloudFormation resource type LocalStack has no provider for (FILE lists the types it has,
one a line), and without what only exists through them (function events on them, outputs that
refer to them). It never leaves out anything else: a remaining reference to a left-out resource
is an error. The left-out resources, why, and what went with them, go to LEFT_OUT.json and are
printed.

check_deploy.py imports `translate` to iterate over the CloudFormation resources that the deployed
template is made of.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import bootstrap  # noqa: E402  (infra/bootstrap.py: the template loader that knows !Ref and co.)

PLACEHOLDER_CODE = "s3://placeholder/code.zip"  # the translator wants packaged code; never deployed


class TemplateError(Exception):
    pass


def translate(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """The CloudFormation template the SAM transform makes of `template` (what CloudFormation
    then deploys, with the same generated logical ids)."""
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        props = resource.get("Properties") or {}
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion"):
            props["CodeUri" if "CodeUri" in props or "ContentUri" not in props else "ContentUri"] = PLACEHOLDER_CODE

    class NoManagedPolicies:
        # Policies are given as documents or ARNs here; a policy given by name would need IAM's
        # list of managed policies, and fails the translation instead of being guessed.
        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", bootstrap.REGION)  # the translator insists on one
    return transform(template, parameters, NoManagedPolicies())


def references(value: Any) -> set[str]:
    """Logical ids that `value` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add((arg.split(".", 1) if isinstance(arg, str) else arg)[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                for name in re.findall(r"\$\{([^}!][^}]*)\}", text):
                    found.add(name.split(".", 1)[0])
                if not isinstance(arg, str):
                    found |= references(arg[1])
            else:
                found |= references(arg)
    return found


def source_of(logical_id: str, template: dict[str, Any]) -> str:
    """The template resource a CloudFormation resource comes from: itself, or the SAM resource
    whose logical id it starts with (SAM names what it generates LogicalId + suffix)."""
    resources = template["Resources"]
    if logical_id in resources:
        return logical_id
    candidates = [
        name
        for name, r in resources.items()
        if r.get("Type", "").startswith("AWS::Serverless::") and logical_id.startswith(name)
    ]
    if not candidates:
        raise TemplateError(f"{logical_id}: comes from no resource of the template")
    return max(candidates, key=len)


def for_localstack(
    template: dict[str, Any], providers: set[str], parameters: dict[str, str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(template to deploy, what was left out and why)."""
    translated = translate(template, parameters)["Resources"]
    unsupported: dict[str, list[str]] = {}  # template resource -> unsupported generated types
    for logical_id, resource in translated.items():
        if resource["Type"].lower() not in providers:
            unsupported.setdefault(source_of(logical_id, template), []).append(f"{logical_id} ({resource['Type']})")

    derived = copy.deepcopy(template)
    left_out: list[dict[str, Any]] = []
    for name, generated in unsupported.items():
        del derived["Resources"][name]
        left_out.append(
            {
                "resource": name,
                "type": template["Resources"][name]["Type"],
                "becomes": generated,
                "why": "LocalStack's CloudFormation (community runtime) has no resource provider for "
                + ", ".join(sorted({g.split(" (")[1].rstrip(")") for g in generated})),
                "also_left_out": [],
            }
        )
    gone = set(unsupported)
    for entry in left_out:
        # Function events on a left-out resource (an HttpApi route) exist only through it.
        for function_id, resource in derived["Resources"].items():
            events = (resource.get("Properties") or {}).get("Events") or {}
            for event_name in [e for e, spec in events.items() if references(spec) & {entry["resource"]}]:
                del events[event_name]
                entry["also_left_out"].append(f"event {function_id}.{event_name}")
        for output in [o for o, spec in (derived.get("Outputs") or {}).items() if references(spec) & {entry["resource"]}]:
            del derived["Outputs"][output]
            entry["also_left_out"].append(f"output {output}")
    for logical_id, resource in derived["Resources"].items():
        dangling = references(resource) & gone
        if dangling:
            raise TemplateError(f"{logical_id} refers to {sorted(dangling)}, which LocalStack cannot deploy")

    # Whatever is left must be deployable as a whole.
    still = sorted(
        f"{lid} ({r['Type']})"
        for lid, r in translate(derived, parameters)["Resources"].items()
        if r["Type"].lower() not in providers
    )
    if still:
        raise TemplateError(f"still not deployable on LocalStack: {', '.join(still)}")
    return derived, left_out


def parse_parameters(items: list[str]) -> dict[str, str]:
    parameters = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise TemplateError(f"--parameter wants NAME=VALUE, not {item}")
        parameters[name] = value
    return parameters


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("for-localstack")
    cmd.add_argument("--template", required=True)
    cmd.add_argument("--providers", required=True, help="file: CloudFormation types LocalStack has, one a line")
    cmd.add_argument("--out", required=True)
    cmd.add_argument("--report", required=True)
    cmd.add_argument("--parameter", action="append", default=[], help="NAME=VALUE, as deployed")
    args = parser.parse_args()
    try:
        with open(args.providers, encoding="utf-8") as f:
            providers = {line.strip().lower() for line in f if line.strip()}
        if not providers:
            raise TemplateError(f"{args.providers} lists no resource types")
        template = bootstrap.load_template(args.template)
        derived, left_out = for_localstack(template, providers, parse_parameters(args.parameter))
    except (TemplateError, bootstrap.BootstrapError) as e:
        print(f"samtemplate.py: error: {e}", file=sys.stderr)
        return 1
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(derived, f, indent=1)
    with open(args.report, "w", encoding="utf-8") as f:
        json.dump(left_out, f, indent=1)
    for entry in left_out:
        also = f"; with it: {', '.join(entry['also_left_out'])}" if entry["also_left_out"] else ""
        print(
            f"LEFT OUT on LocalStack: {entry['resource']} ({entry['type']} -> {', '.join(entry['becomes'])}): "
            f"{entry['why']}{also}"
        )
    if not left_out:
        print("the whole template deploys on LocalStack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
