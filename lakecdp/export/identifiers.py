"""How a customer is named to a destination: plain email only where it must be, hashes elsewhere."""

from __future__ import annotations

import hashlib
import re
from typing import overload

from pyspark.sql import Column, functions as F

# Deliberately loose: the ESP is the authority on deliverability; this only keeps out values
# that are certainly not an address (blanks, missing '@', spaces).
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_EMAIL = re.compile(EMAIL_PATTERN)
_EMAIL_IN_TEXT = re.compile(r"[^@\s\"'<>(),;:]+@[^@\s\"'<>(),;:]+\.[A-Za-z]{2,}")


def normalize_email(email: str | None) -> str | None:
    """Trimmed and lowercased, the form every hash below is computed on; None unless it looks like an
    address (EMAIL_PATTERN). `normalized_email_col` is the same in Spark."""
    if email is None:
        return None
    text = email.strip().lower()
    return text if _EMAIL.match(text) else None


def email_sha256(email: str | None) -> str:
    """Normalized SHA-256 (trim + lowercase), the form audience-matching destinations expect."""
    return hashlib.sha256(_address(email).encode()).hexdigest()


def mailchimp_subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lowercase address.

    https://mailchimp.com/developer/marketing/docs/methods-parameters/#path-parameters
    """
    return hashlib.md5(_address(email).encode(), usedforsecurity=False).hexdigest()  # Mailchimp's id, not a secret


def _address(email: str | None) -> str:
    # Upserts always carry an address (the audience blocks customers without one), so a hash of
    # nothing is a caller's bug, not a value to send.
    normalized = normalize_email(email)
    if normalized is None:
        raise ValueError("no email address to hash (missing, blank or not an address)")
    return normalized


def normalized_email_col(column: str = "email") -> Column:
    """`normalize_email` in Spark."""
    trimmed = F.lower(F.trim(F.col(column)))
    return F.when(trimmed.rlike(EMAIL_PATTERN), trimmed)


def email_sha256_col(normalized: Column) -> Column:
    return F.sha2(normalized, 256)


def subscriber_hash_col(normalized: Column) -> Column:
    return F.md5(normalized)


@overload
def scrub_pii(text: str, limit: int = 300) -> str: ...
@overload
def scrub_pii(text: None, limit: int = 300) -> None: ...
def scrub_pii(text: str | None, limit: int = 300) -> str | None:
    """An ESP's error text with any email address replaced, cut to `limit` characters (safe to store and log)."""
    if text is None:
        return None
    return _EMAIL_IN_TEXT.sub("<email>", str(text))[:limit]
