"""Personalized content: blocks chosen by a decision matrix, tokens with fallbacks, sandboxed rendering.

`merge_fields(customer_id, ...)` gives ESP merge fields; `lakecdp serve` answers GET /v1/content/{id}.
Imports are lazy so `lakecdp --help` does not load jinja2, pyarrow and deltalake.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ContentService", "export_content_fields", "merge_fields", "open_content_service"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lakecdp.content import service

        return getattr(service, name)
    raise AttributeError(f"module 'lakecdp.content' has no attribute {name!r}")
