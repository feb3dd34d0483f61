"""LocalStack's CloudFormation offline: a resource type is supported when its provider is installed.

Before it creates a change set, LocalStack's CloudFormation asks its "catalog" whether each resource
type is supported. The catalog it means to use is fetched from LocalStack's web service; offline
that fails, and the fallback it then loads ("aws-catalog-runtime-only") answers "don't know" for
every type, which the change set checker takes as unsupported: every deploy fails with "Sorry,
the AWS::SQS::Queue resource in the sqs service is not supported." (and so for every type).

This catalog answers from what this LocalStack has: a type is available when a CloudFormation
resource provider for it is installed (the same list the remote catalog's answer is checked
against), and not supported otherwise, so a template with, say, an AWS::ApiGatewayV2::Api still
fails, as it should on the community runtime. It is registered under the name LocalStack loads
first when the remote catalog cannot be had ("aws-catalog-runtime-only-with-license", which only
LocalStack's paid build provides otherwise); with network access LocalStack uses its remote
catalog as before.
"""

from __future__ import annotations

from localstack.utils.catalog.catalog import CatalogPlugin
from localstack.utils.catalog.common import (
    CloudFormationResourcesSupportAtRuntime,
    CloudFormationResourcesSupportInLatest,
)


class OfflineCatalogPlugin(CatalogPlugin):
    name = "aws-catalog-runtime-only-with-license"

    def __init__(self) -> None:
        self.available = {name.lower() for name in self._get_cfn_resources_available_at_runtime()}

    def get_aws_service_status(self, service_name, operation_name=None):
        return None  # as LocalStack's runtime-only catalog: no opinion on API operations

    def get_cloudformation_resource_status(self, resource_name, service_name, is_pro_resource=False):
        if resource_name.lower() in self.available:
            return CloudFormationResourcesSupportAtRuntime.AVAILABLE
        return CloudFormationResourcesSupportInLatest.NOT_SUPPORTED
