"""Files under a lake root, local or s3://, through pyarrow's filesystems (for what is not a table read or write)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pyarrow import fs


def filesystem(root: str, storage_options: Mapping[str, str] | None = None) -> tuple[fs.FileSystem, str]:
    """(filesystem, base path) for a local folder or an s3:// root with delta-rs style storage options."""
    if "://" not in root or root.startswith("file://"):
        return fs.LocalFileSystem(), os.path.abspath(root.removeprefix("file://"))
    if root.startswith("s3://"):
        options = {k.upper(): v for k, v in (storage_options or {}).items()}
        kwargs: dict[str, Any] = {}
        endpoint = options.get("AWS_ENDPOINT_URL") or options.get("AWS_ENDPOINT")
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        if options.get("AWS_ACCESS_KEY_ID"):
            kwargs.update(access_key=options["AWS_ACCESS_KEY_ID"], secret_key=options.get("AWS_SECRET_ACCESS_KEY"))
        if options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION"):
            kwargs["region"] = options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION")
        return fs.S3FileSystem(**kwargs), root.removeprefix("s3://").rstrip("/")
    filesystem_, path = fs.FileSystem.from_uri(root)
    return filesystem_, path
