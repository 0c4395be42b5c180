"""ESP adapters, one per destination type; `build_adapter` picks by the destination's `type`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lakecdp.export.adapters.base import Adapter, Runtime


def adapter_class(destination_type: str) -> type[Adapter]:
    """The adapter class for a destination type (imported on demand: boto3 only when S3 is used)."""
    cls: type[Adapter]
    if destination_type == "mailchimp":
        from lakecdp.export.adapters.mailchimp import MailchimpAdapter as cls
    elif destination_type == "klaviyo":
        from lakecdp.export.adapters.klaviyo import KlaviyoAdapter as cls
    elif destination_type == "braze":
        from lakecdp.export.adapters.braze import BrazeAdapter as cls
    elif destination_type == "sfmc":
        from lakecdp.export.adapters.sfmc import SfmcAdapter as cls
    elif destination_type == "s3":
        from lakecdp.export.adapters.s3 import S3Adapter as cls
    elif destination_type == "webhook":
        from lakecdp.export.adapters.webhook import WebhookAdapter as cls
    else:
        raise ValueError(f"no adapter for destination type {destination_type!r}")
    return cls


def build_adapter(name: str, settings: Any, attributes: Sequence[str], runtime: Runtime) -> Adapter:
    """The adapter for one configured destination; raises ConfigError when its secrets are not set."""
    return adapter_class(settings.type)(name, settings, attributes, runtime)


__all__ = ["Adapter", "Runtime", "adapter_class", "build_adapter"]
