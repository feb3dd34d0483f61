"""Lambda on LocalStack's community runtime without Docker: functions are created, never run.

LocalStack runs every function in a Docker container. Its only executor ("docker") prepares each
new function version by fetching its runtime-init binary from the internet and pulling the
runtime's image through Docker; without either, CreateFunction leaves the function in state
Failed ("Error while creating lambda: ..."), and CloudFormation fails the stack on it. This machine
has neither, and the project does not need LocalStack to run its functions (the dev server drives
the same handlers), only to deploy template.yaml and read back what was deployed
(infra/deploy-localstack.sh).

This executor prepares a version the way the Docker one does, short of Docker: it unpacks the
function's code archive (so a broken zip still fails the function), then the function is Active
with the configuration it was given (runtime, architecture, environment, role, ...). Invoking it
fails with an error that says why; nothing is faked. LocalStack uses it when
LAMBDA_RUNTIME_EXECUTOR=no-docker (infra/stack.sh sets it for its LocalStack stacks).
"""

from __future__ import annotations

import logging

from plux import Plugin

LOG = logging.getLogger(__name__)

NOT_INVOKED = (
    "this LocalStack runs without Docker (infra/stack.sh, LAMBDA_RUNTIME_EXECUTOR=no-docker): "
    "functions are created but not invoked; the dev server runs the handlers instead"
)


class NoDockerRuntimeExecutorPlugin(Plugin):
    namespace = "localstack.lambda.runtime_executor"
    name = "no-docker"

    def load(self, *args, **kwargs):
        # Imported here, as LocalStack's own plugins do, so listing plugins stays cheap.
        from localstack.services.lambda_.invocation.runtime_executor import (
            LambdaRuntimeException,
            RuntimeExecutor,
        )

        class NoDockerRuntimeExecutor(RuntimeExecutor):
            def start(self, env_vars: dict[str, str]) -> None:
                raise LambdaRuntimeException(NOT_INVOKED)

            def stop(self) -> None:
                pass

            def _refuse(self, *args, **kwargs):
                raise LambdaRuntimeException(NOT_INVOKED)

            get_address = get_endpoint_from_executor = get_runtime_endpoint = _refuse
            invoke = get_logs = _refuse

            @classmethod
            def prepare_version(cls, function_version) -> None:
                # What the Docker executor does first, without the runtime-init download and the
                # image pull: unpack the code archive.
                if function_version.config.code:
                    function_version.config.code.prepare_for_execution()

            @classmethod
            def cleanup_version(cls, function_version) -> None:
                pass

            @classmethod
            def validate_environment(cls) -> bool:
                LOG.info("Lambda: %s", NOT_INVOKED)
                return True

        return NoDockerRuntimeExecutor
