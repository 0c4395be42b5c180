"""Local stand-ins for the ESPs: HTTP servers that enforce each one's documented contract (tests, benchmarks, the demo).

Each runs on 127.0.0.1 on a free port, records every request, counts deliveries per member,
and lists every contract breach it saw in `violations` (a test asserts the list is empty).
"""

from lakecdp.sandbox.base import ContractServer, Fault, Request, Response
from lakecdp.sandbox.braze import BrazeServer
from lakecdp.sandbox.klaviyo import KlaviyoServer
from lakecdp.sandbox.mailchimp import MailchimpServer
from lakecdp.sandbox.mandrill import MandrillServer
from lakecdp.sandbox.sfmc import SfmcServer
from lakecdp.sandbox.webhook import TriggerReceiver, WebhookServer

__all__ = [
    "BrazeServer",
    "ContractServer",
    "Fault",
    "KlaviyoServer",
    "MailchimpServer",
    "MandrillServer",
    "Request",
    "Response",
    "SfmcServer",
    "TriggerReceiver",
    "WebhookServer",
]
