"""Local HTTP servers that enforce each ESP's documented contract, for tests and benchmarks.

Each runs on 127.0.0.1 on a free port, records every request, counts deliveries per member,
and lists every contract breach it saw in `violations` (a test asserts the list is empty).
"""
from tests.contract_servers.base import ContractServer, Fault, Request, Response
from tests.contract_servers.braze import BrazeServer
from tests.contract_servers.klaviyo import KlaviyoServer
from tests.contract_servers.mailchimp import MailchimpServer
from tests.contract_servers.sfmc import SfmcServer
from tests.contract_servers.webhook import WebhookServer

__all__ = [
    "BrazeServer", "ContractServer", "Fault", "KlaviyoServer", "MailchimpServer", "Request", "Response", "SfmcServer",
    "WebhookServer",
]
