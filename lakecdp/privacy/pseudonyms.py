"""Pseudonymous customer ids: analytics tables never hold the retailer's own customer id.

Every id that arrives from outside (Segment `userId`, `anonymousId`, `previousId`, the
`customer_id` column of a CRM import, a CLI argument, the content API's path) becomes
`pc_` + the first 128 bits of HMAC-SHA256(key, id) in hex before it is stored. The retailer's
id is kept once, in `customers.external_id` (beside the other contact PII), and only exports,
triggers and the access bundle read it back. Without the key, a table keyed by pseudonyms
cannot be joined back to the retailer's systems (GDPR art. 4(5): the additional information is
kept separately).

The key is a secret, not a setting: it comes from $LAKECDP_PSEUDONYM_KEY, else from the file
conf/local/pseudonym.key (under $LAKECDP_CONF_DIR when set; ignored by git), which is generated
on first use for the embedded default. `Lake.pseudonyms` loads it once per lake. The lake records a fingerprint
of the key in `lake_keys`: a process with another key refuses to write rather than splitting
every customer in two.

An id that already has the pseudonym's shape passes through unchanged, so ids lakecdp itself
hands out (signed email links, unsubscribe events) can come back through the collector.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lakecdp.config import ConfigError
from lakecdp.config.loader import default_conf_dir
from lakecdp.config.secret_files import create_secret_file

if TYPE_CHECKING:  # pyspark is imported where a Column is built: the content API and CLI need no Spark
    from pyspark.sql import Column

log = logging.getLogger(__name__)

PREFIX = "pc_"
HEX_CHARS = 32  # 128 bits of the HMAC: collisions need ~2^64 customers
PATTERN = re.compile(rf"^{PREFIX}[0-9a-f]{{{HEX_CHARS}}}$")
KEY_ENV = "LAKECDP_PSEUDONYM_KEY"
KEY_FILE = "local/pseudonym.key"  # under the conf folder
MIN_KEY_CHARS = 32
_BLOCK = 64  # SHA-256 block size (RFC 2104)
_CHECK_MESSAGE = b"lakecdp pseudonym key check"


class PseudonymKeyError(ConfigError):
    """The pseudonym key is empty, too short, or not the one the lake was built with."""


class Pseudonymizer:
    """HMAC-SHA256 pseudonyms, the same in Python (`of`) and in Spark (`column`)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise PseudonymKeyError(
                f"the pseudonym key has {len(key)} bytes; it needs at least {MIN_KEY_CHARS}. "
                f"Fix: set ${KEY_ENV} to e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        self._key = key
        block_key = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
        block_key = block_key.ljust(_BLOCK, b"\x00")
        self._inner_pad = bytes(b ^ 0x36 for b in block_key)
        self._outer_pad = bytes(b ^ 0x5C for b in block_key)

    @property
    def key(self) -> bytes:
        """The key, for a child process of this one that pseudonymizes too (lakecdp.online.bronze); never log it."""
        return self._key

    def of(self, external_id: str) -> str:
        """The pseudonym of one id (an id that already is a pseudonym is returned as it is)."""
        if PATTERN.match(external_id):
            return external_id
        digest = hmac.new(self._key, external_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:HEX_CHARS]

    def column(self, external_id: Column) -> Column:
        """The same as `of`, as a Spark expression (HMAC spelled out over sha2 on binary; null stays null)."""
        from pyspark.sql import functions as F

        message = external_id.cast("binary")
        inner = F.unhex(F.sha2(F.concat(F.lit(self._inner_pad), message), 256))
        outer = F.sha2(F.concat(F.lit(self._outer_pad), inner), 256)
        pseudonym = F.concat(F.lit(PREFIX), F.substring(outer, 1, HEX_CHARS))
        return F.when(external_id.rlike(PATTERN.pattern), external_id).otherwise(pseudonym)

    @property
    def fingerprint(self) -> str:
        """Identifies the key without revealing it (stored in the lake to catch a changed key)."""
        return hmac.new(self._key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()[:16]


def load_pseudonymizer(*, conf_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Pseudonymizer:
    """The key from the environment, else from the key file (generated when it does not exist yet)."""
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        return Pseudonymizer(env[KEY_ENV].encode("utf-8"))
    path = (conf_dir or default_conf_dir()) / KEY_FILE
    if create_secret_file(path, secrets.token_hex(32) + "\n"):
        log.warning(
            "generated a pseudonym key in %s: back it up, every customer id in the lake depends on it (a deployment sets $%s instead)",
            path,
            KEY_ENV,
        )
    key = path.read_text().strip()
    if not key:
        raise PseudonymKeyError(f"{path} is empty. Fix: delete it to generate a key, or set ${KEY_ENV}")
    return Pseudonymizer(key.encode("utf-8"))


def check_lake_key(lake, pseudonymizer: Pseudonymizer, now) -> None:
    """Record the key's fingerprint in a new lake; refuse a key that is not the lake's."""
    from pyspark.sql import functions as F

    if lake.exists("lake_keys"):
        stored = {r.fingerprint for r in lake.read("lake_keys").filter(F.col("purpose") == "pseudonym").collect()}
        if stored and pseudonymizer.fingerprint not in stored:
            raise PseudonymKeyError(
                f"the pseudonym key is not the one the lake at {lake.root} was built with (fingerprint "
                f"{pseudonymizer.fingerprint}, lake has {', '.join(sorted(stored))}). Every customer id would change. "
                f"Fix: set ${KEY_ENV} (or the key file) to the lake's key"
            )
        if stored:
            return
    row = {"purpose": "pseudonym", "fingerprint": pseudonymizer.fingerprint, "recorded_at": now}
    lake.append("lake_keys", lake.spark.createDataFrame([row], lake.spec("lake_keys").schema))
