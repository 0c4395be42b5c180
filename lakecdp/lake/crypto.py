"""Encryption at rest of contact columns, with a data key per customer (crypto-shredding).

Every contact value in `customers` (email, names, and each declared `pii: true` string attribute)
is stored as `lkc1:` + base64(nonce || AES-256-GCM ciphertext) under the customer's own data key.
The associated data binds a value to its customer and column, so a ciphertext moved to another
row or column does not decrypt. Data keys are random 256-bit keys, stored only wrapped (AES-GCM
under the master key) in `customer_keys`. Erasing a customer deletes their key and purges the
table's history: every older Delta version or backup of `customers` then holds ciphertext nobody
can read (crypto-shredding, NIST SP 800-88r1 "cryptographic erase").

The master key is a secret, never a setting: `lake.encryption.master_key` names where it is read
from (`env:NAME`, `file:PATH` for a mounted secret, `aws-secretsmanager:SECRET_ID`), and `auto`
(the default) reads $LAKECDP_MASTER_KEY, else a key file generated on first use in the user's
state folder (the embedded default: back it up apart from the lake). The lake records a
fingerprint of the master key in `lake_keys`, so a process with another key refuses to run
instead of writing data keys nobody else can unwrap.

Only the `Lake` adapter encrypts (on every write to `customers`), and only callers that need the
values decrypt (`Lake.with_plain_contacts`): exports, triggered sends, the content API's tokens,
the access bundle, erasure's landing search and the imports' change detection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lakecdp.config import ConfigError
from lakecdp.config.secret_files import create_secret_file

if TYPE_CHECKING:  # the content API decrypts without Spark
    import pandas as pd
    from pyspark.sql import DataFrame

    from lakecdp.config.models import EncryptionSettings

log = logging.getLogger(__name__)

MARKER = "lkc1:"  # version 1: AES-256-GCM, 96-bit nonce, AAD = customer_id | column
KEY_ENV = "LAKECDP_MASTER_KEY"
STATE_DIR_ENV = "LAKECDP_STATE_DIR"
KEY_FILE = "master.key"
KEY_BYTES = 32
NONCE_BYTES = 12
FINGERPRINT_PURPOSE = "contact-encryption"
_CHECK_MESSAGE = b"lakecdp master key check"
_WRAP_AAD = b"lakecdp data key|"
_NEW_KEY_HINT = "python -c 'import secrets; print(secrets.token_hex(32))'"


class EncryptionKeyError(ConfigError):
    """The master key is missing, malformed, or not the one the lake's data keys are wrapped with."""


def parse_key(text: str, where: str) -> bytes:
    """A master key written as 64 hex characters (32 bytes)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(f"{where}: a master key is {KEY_BYTES * 2} hex characters. Fix: generate one with `{_NEW_KEY_HINT}`")
    return key


def load_master_key(source: str, *, env: Mapping[str, str] | None = None) -> bytes:
    """The master key from `source`: auto | env:NAME | file:PATH | aws-secretsmanager:SECRET_ID."""
    env = os.environ if env is None else env
    kind, _, name = source.partition(":")
    if kind == "auto":
        return parse_key(env[KEY_ENV], f"${KEY_ENV}") if env.get(KEY_ENV) else _state_file_key(env)
    if kind == "env":
        if not env.get(name):
            raise EncryptionKeyError(
                f"lake.encryption.master_key names ${name}, which is not set. Fix: set it to `{_NEW_KEY_HINT}`'s output"
            )
        return parse_key(env[name], f"${name}")
    if kind == "file":
        path = Path(name).expanduser()
        if not path.is_file():
            raise EncryptionKeyError(f"lake.encryption.master_key names {path}, which does not exist. Fix: mount the secret there")
        return parse_key(path.read_text(), str(path))
    if kind == "aws-secretsmanager":
        import boto3

        # AWS_ENDPOINT_URL (boto3's own variable) points it at another Secrets Manager-compatible server.
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
        return parse_key(secret, f"secret {name}")
    raise EncryptionKeyError(
        f"lake.encryption.master_key: {source!r} is not a key source. Fix: auto, env:NAME, file:PATH or aws-secretsmanager:SECRET_ID"
    )


def _state_file_key(env: Mapping[str, str]) -> bytes:
    """The embedded default's key: a file in the user's state folder, generated once (mode 0600)."""
    folder = Path(env.get(STATE_DIR_ENV) or Path.home() / ".local" / "state" / "lakecdp")
    path = folder / KEY_FILE
    if create_secret_file(path, secrets.token_hex(KEY_BYTES) + "\n"):
        log.warning(
            "generated the contact-encryption master key in %s: back it up apart from the lake (a deployment sets $%s)", path, KEY_ENV
        )
    return parse_key(path.read_text(), str(path))


class ContactCipher:
    """Wraps data keys under the master key and encrypts or decrypts contact values under a data key."""

    def __init__(self, master_key: bytes, columns: Iterable[str]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._master = AESGCM(master_key)
        self._master_bytes = master_key
        self.columns = tuple(dict.fromkeys(columns))

    def __reduce__(self):
        # Spark ships the cipher to its Python workers; AESGCM objects do not pickle, the key bytes do.
        return (ContactCipher, (self._master_bytes, self.columns))

    @property
    def fingerprint(self) -> str:
        """Identifies the master key without revealing it (kept in lake_keys)."""
        return hmac.new(self._master_bytes, _CHECK_MESSAGE, hashlib.sha256).hexdigest()[:16]

    def new_wrapped_key(self, customer_id: str) -> str:
        """A fresh data key for `customer_id`, wrapped (base64) for `customer_keys`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._master.encrypt(nonce, os.urandom(KEY_BYTES), _WRAP_AAD + customer_id.encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def unwrap(self, customer_id: str, wrapped: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        raw = base64.b64decode(wrapped)
        try:
            return self._master.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _WRAP_AAD + customer_id.encode())
        except InvalidTag:
            raise EncryptionKeyError(
                f"the data key of {customer_id} does not unwrap: the master key is not the one the lake was built with. "
                f"Fix: set lake.encryption.master_key (or ${KEY_ENV}) to the lake's key"
            ) from None

    @staticmethod
    def encrypt(data_key: bytes, customer_id: str, column: str, value: str | None) -> str | None:
        """`value` sealed under the data key; None and values already sealed pass through unchanged."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if value is None or value.startswith(MARKER):
            return value
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(data_key).encrypt(nonce, value.encode("utf-8"), f"{customer_id}|{column}".encode())
        return MARKER + base64.b64encode(nonce + sealed).decode("ascii")

    @staticmethod
    def decrypt(data_key: bytes | None, customer_id: str, column: str, value: str | None) -> str | None:
        """The plain value; None when the value is None or its data key is gone (erased)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if value is None or not value.startswith(MARKER):
            return value  # written before encryption was on: read as it is
        if data_key is None:
            return None
        try:
            raw = base64.b64decode(value[len(MARKER) :])
            return AESGCM(data_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{customer_id}|{column}".encode()).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError):
            raise EncryptionKeyError(
                f"customers.{column} of {customer_id} does not decrypt under its data key (tampered or moved)"
            ) from None

    def open_any(self, data_keys: Sequence[bytes], customer_id: str, column: str, value: str | None) -> str | None:
        """`decrypt` under whichever of the customer's keys sealed the value (two writers racing may each
        have stored a key); None when the customer has no key left (erased)."""
        for key in data_keys[:-1]:
            try:
                return self.decrypt(key, customer_id, column, value)
            except EncryptionKeyError:
                continue
        return self.decrypt(data_keys[-1] if data_keys else None, customer_id, column, value)

    def transform_frame(
        self, frame: pd.DataFrame, columns: Iterable[str], *, seal: bool, keys: Mapping[str, Sequence[str]] | None = None
    ) -> pd.DataFrame:
        """Encrypt (seal) or decrypt `columns` of a pandas frame with a customer_id column.

        Args:
            keys: customer_id -> wrapped keys (sorted; sealing uses the first); default: the frame's
                `wrapped_keys` column, a list per row.
        """
        unwrapped: dict[tuple[str, str], bytes] = {}

        def data_keys(customer_id: str, wrapped: Sequence[str]) -> list[bytes]:
            for item in wrapped:
                if (customer_id, item) not in unwrapped:
                    unwrapped[(customer_id, item)] = self.unwrap(customer_id, item)
            return [unwrapped[(customer_id, item)] for item in wrapped]

        def step(held: list[bytes], customer_id: str, column: str, value: str) -> str | None:
            if not seal:
                return self.open_any(held, customer_id, column, value)
            if not held:
                raise EncryptionKeyError(f"customers.{column} of {customer_id}: no data key to encrypt under (customer_keys)")
            return self.encrypt(held[0], customer_id, column, value)

        out = frame.copy()
        ids = frame["customer_id"].tolist()
        if keys is None:
            wrapped = [[] if w is None or isinstance(w, float) else list(w) for w in frame["wrapped_keys"].tolist()]
        else:
            wrapped = [list(keys.get(customer_id, ())) for customer_id in ids]
        held = [data_keys(customer_id, items) for customer_id, items in zip(ids, wrapped)]
        for column in columns:
            values = [None if v is None or v != v else v for v in frame[column].tolist()]
            out[column] = [step(k, cid, column, value) if value is not None else None for cid, k, value in zip(ids, held, values)]
        return out


def cipher_for(encryption: EncryptionSettings, pii_columns: Iterable[str] = ()) -> ContactCipher | None:
    """The configured cipher (None: encryption is off), its master key loaded from the configured source."""
    if not encryption.enabled:
        return None
    return ContactCipher(load_master_key(encryption.master_key), (*encryption.columns, *pii_columns))


def sealed_columns(cipher: ContactCipher, frame: DataFrame) -> list[str]:
    """The cipher's columns present in a customers DataFrame, as string columns."""
    types = dict(frame.dtypes)
    return [c for c in cipher.columns if types.get(c) == "string"]


def seal_contacts(cipher: ContactCipher, frame: DataFrame, keys: Mapping[str, Sequence[str]]) -> DataFrame:
    """`frame` with its contact columns encrypted, each row under its customer's data key (`keys`: a batch's worth)."""
    columns = sealed_columns(cipher, frame)
    if not columns:
        return frame
    held = dict(keys)

    def batches(frames):
        for part in frames:
            yield cipher.transform_frame(part, columns, seal=True, keys=held)

    return frame.mapInPandas(batches, frame.schema)


def open_contacts(cipher: ContactCipher, frame: DataFrame, keys: DataFrame) -> DataFrame:
    """`frame` with its contact columns decrypted; a customer without a key in `keys` (customer_keys rows)
    reads as null contacts."""
    from pyspark.sql import functions as F

    columns = sealed_columns(cipher, frame)
    if not columns:
        return frame
    grouped = keys.groupBy("customer_id").agg(F.sort_array(F.collect_list("wrapped_key")).alias("wrapped_keys"))
    joined = frame.join(grouped, on="customer_id", how="left")

    def batches(frames):
        for part in frames:
            yield cipher.transform_frame(part, columns, seal=False)

    return joined.mapInPandas(batches, joined.schema).select(*frame.columns)


def plain_rows(cipher: ContactCipher, rows: list[dict], wrapped: Mapping[str, Sequence[str]]) -> list[dict]:
    """Python rows (with customer_id) with their contact fields decrypted: the content API's path, no Spark."""
    out = []
    for row in rows:
        customer_id = row["customer_id"]
        keys = [cipher.unwrap(customer_id, item) for item in wrapped.get(customer_id, ())]
        plain = dict(row)
        for column in cipher.columns:
            if plain.get(column) is not None:
                plain[column] = cipher.open_any(keys, customer_id, column, plain[column])
        out.append(plain)
    return out
