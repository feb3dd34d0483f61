"""SES v2 (`sesv2`) for LocalStack's community runtime, forwarded to moto.

The community build serves SES v1 but not v2, and the project sends its mail with SES v2
(aws-sdk-sesv2 SendEmail). moto, which LocalStack bundles, has an SES v2 backend built on its SES v1
backend, the same one LocalStack's SES v1 provider uses. So this provider hands every SES v2 call to
moto unchanged, and then:

- a sender verified through SES v1 (VerifyEmailIdentity, as infra/payments.sh and the tests do) is
  verified for SES v2 too, and unverified senders are refused, as in SES;
- mail sent through SES v2 counts in SES v1's GetSendQuota (`SentLast24Hours`), which is how the
  integration tests count mail (tests/support/payments.rs, mails_sent) on moto and here alike;
- SendEmail also records the message in LocalStack's own store of sent mail, so it can be read
  back like SES v1 mail: GET /_aws/ses on LocalStack's port lists every message (id, source,
  destination, subject, body; `?email=<sender>` filters), DELETE /_aws/ses clears the list.

LocalStack loads it through the entry point `sesv2:default` in the `localstack.aws.provider`
namespace (see pyproject.toml) when `sesv2` is in SERVICES.

Only SendEmail is relied on. Other calls are whatever moto makes of them; one seen: GetEmailIdentity
of an address answers NotFound (moto matches the still URL-encoded "@" in the path).
"""

from __future__ import annotations

import logging

from localstack.services.plugins import aws_provider

LOG = logging.getLogger(__name__)


@aws_provider(api="sesv2")
def sesv2():
    # Imported here, as LocalStack's own providers do, so that merely listing plugins stays cheap.
    from localstack.aws.spec import load_service
    from localstack.aws.skeleton import Skeleton
    from localstack.services.moto import call_moto
    from localstack.services.plugins import Service, ServiceLifecycleHook
    from localstack.services.ses.models import SentEmail, SentEmailBody
    from localstack.services.ses.provider import register_ses_api_resource, save_for_retrospection
    from localstack.utils.strings import to_str

    def forward(context, _request):
        # moto answers (or raises NotImplementedError, which LocalStack turns into a 501).
        return call_moto(context)

    def send_email(context, request):
        response = call_moto(context)  # refused (400 MessageRejected) for an unverified sender
        content = request.get("Content") or {}
        sent = SentEmail(
            Id=response["MessageId"],
            Region=context.region,
            Source=request.get("FromEmailAddress"),
            Destination=request.get("Destination") or {},
        )
        if simple := content.get("Simple"):
            body = simple.get("Body") or {}
            sent["Subject"] = (simple.get("Subject") or {}).get("Data")
            sent["Body"] = SentEmailBody(
                text_part=(body.get("Text") or {}).get("Data"),
                html_part=(body.get("Html") or {}).get("Data"),
            )
        elif raw := content.get("Raw"):
            sent["RawData"] = to_str(raw.get("Data") or b"")
        save_for_retrospection(sent)
        return response

    class Lifecycle(ServiceLifecycleHook):
        def on_after_init(self):
            # GET /_aws/ses, which LocalStack registers when its SES v1 provider starts: SES v2
            # may be used before (or without) any SES v1 call.
            register_ses_api_resource()

    model = load_service("sesv2")
    dispatch = {name: forward for name in model.operation_names}
    dispatch["SendEmail"] = send_email
    LOG.debug("SES v2 served by moto's backend (%d operations)", len(dispatch))
    return Service("sesv2", skeleton=Skeleton(model, dispatch), lifecycle_hook=Lifecycle())
