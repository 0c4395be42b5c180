"""S3 file drop: one part file per batch, then a manifest.json per (run, segment), through boto3.

Keys are deterministic (<prefix>/<destination>/<segment>/<run_id>/part-<seq>.<ext>), so a resent
batch overwrites its own object byte for byte. Each part carries its row counts and SHA-256 as
object metadata and is uploaded with ChecksumSHA256, which S3 verifies on arrival
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html); the
manifest is written last, from the parts actually present, so an importer that waits for it
never reads a half-written drop. Server-side encryption per
https://docs.aws.amazon.com/AmazonS3/latest/userguide/serv-side-encryption.html.

Erasure is not supported: a file drop has no deletion API on the receiving side, and whoever
imported the files already holds the rows. `forget` says so in the erasure proof; the importer
must be asked to delete the customer. Part files still in the bucket keep the customer's rows
until they are removed, e.g. by a lifecycle expiration rule on the prefix
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lifecycle-mgmt.html).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from lakecdp.export.adapters.base import Adapter, all_failed, all_sent, not_supported
from lakecdp.export.audience import ATTRIBUTES
from lakecdp.export.batches import ACTIONS, REMOVE, Batch, BatchResult, json_bytes
from lakecdp.export.http import DestinationError, Limiter, RetriesExhausted, RetryPolicy, call_with_retries
from lakecdp.export.identifiers import email_sha256

RETRYABLE_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed"}
REFUSED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"}


class S3Adapter(Adapter):
    identifier_kind = "email_sha256"
    honours_idempotency_keys = True  # the object key is the batch's: a resend overwrites, never adds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import boto3
        from botocore.config import Config

        s = self.settings
        credentials = {}
        if s.access_key_id_env:
            credentials = {
                "aws_access_key_id": self.secret("access_key_id_env"),
                "aws_secret_access_key": self.secret("secret_access_key_env"),
            }
        timeout = s.timeout.total_seconds()
        # botocore's own retries are off: the shared policy below retries, so attempts are counted once.
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=timeout, read_timeout=timeout)
        self.s3 = boto3.client("s3", endpoint_url=s.endpoint_url, region_name=s.region, config=config, **credentials)
        self._policy = RetryPolicy(s.retry, clock=self.runtime.clock, rng=self.runtime.rng)
        self._limiter = Limiter(
            s.rate_limits,
            fill_fraction=s.fill_fraction,
            max_in_flight=s.max_in_flight,
            monotonic=self.runtime.clock.monotonic,
            sleep=self.runtime.clock.sleep,
        )
        self._requests = 0
        self._requests_lock = threading.Lock()  # batches are sent on max_in_flight threads
        self._attribute_columns = [a for a in ATTRIBUTES if a in self.attributes]
        plain = ["email"] if s.identifier == "email" else []
        self._columns = ["action", "customer_id", "email_sha256", *plain, *self._attribute_columns]

    def close(self) -> None:
        self.s3.close()

    @property
    def requests_sent(self) -> int:
        """S3 calls made (puts, heads, lists), every attempt counted: boto3 has no ApiClient to count them."""
        return self._requests

    def run_prefix(self, segment: str, run_id: str) -> str:
        return f"{self.settings.prefix.strip('/')}/{self.name}/{segment}/{run_id}"

    def part_key(self, batch: Batch) -> str:
        ext = "csv" if self.settings.format == "csv" else "jsonl"
        return f"{self.run_prefix(batch.segment, batch.run_id)}/part-{batch.seq:05d}.{ext}"

    def render(self, batch: Batch) -> bytes:
        # Content merge fields (content_fields: true) become columns after the attributes.
        content_columns = list(dict.fromkeys(k for m in batch.members for k in m.merge_fields))
        rows = []
        for m in batch.members:
            row: dict[str, Any] = {"action": m.action, "customer_id": m.esp_id}  # the retailer's id
            # Removes carry no address: only the hash logged when the member was added.
            row["email_sha256"] = m.identifier if m.action == REMOVE else email_sha256(m.email)
            if self.settings.identifier == "email":
                row["email"] = None if m.action == REMOVE else m.email
            row.update({a: (None if m.action == REMOVE else m.attributes.get(a)) for a in self._attribute_columns})
            row.update({c: m.merge_fields.get(c) for c in content_columns})
            rows.append(row)
        if self.settings.format == "jsonl":
            return b"".join(json_bytes(row) + b"\n" for row in rows)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=[*self._columns, *content_columns], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode()

    def send(self, batch: Batch) -> BatchResult:
        body = self.render(batch)
        digest = hashlib.sha256(body)
        counts = Counter(m.action for m in batch.members)
        metadata = {"sha256": digest.hexdigest(), "rows": str(len(batch.members))}
        metadata.update({f"{a}s": str(counts.get(a, 0)) for a in ACTIONS})
        request = {
            "Bucket": self.settings.bucket,
            "Key": self.part_key(batch),
            "Body": body,
            "Metadata": metadata,
            "ContentType": "text/csv" if self.settings.format == "csv" else "application/x-ndjson",
            "ChecksumSHA256": base64.b64encode(digest.digest()).decode(),
            **self._encryption(),
        }
        try:
            self._call(lambda: self.s3.put_object(**request))
        except RetriesExhausted as exc:
            return all_failed(batch, exc.reason, retryable=True)
        return all_sent(batch, bytes=len(body))

    def finish(self, results: Sequence[BatchResult]) -> None:
        for segment, run_id in sorted({(r.batch.segment, r.batch.run_id) for r in results}):
            self.write_manifest(segment, run_id)

    def write_manifest(self, segment: str, run_id: str) -> dict[str, Any]:
        """manifest.json from the parts present under the run's prefix (their metadata, not memory)."""
        prefix = self.run_prefix(segment, run_id)
        files: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        for key in self._part_keys(prefix):
            head = self._call(lambda key=key: self.s3.head_object(Bucket=self.settings.bucket, Key=key))
            meta = head["Metadata"]
            files.append({"key": key, "rows": int(meta["rows"]), "bytes": head["ContentLength"], "sha256": meta["sha256"]})
            counts.update({a: int(meta.get(f"{a}s", 0)) for a in ACTIONS})
        manifest = {
            "destination": self.name,
            "segment": segment,
            "run_id": run_id,
            "format": self.settings.format,
            "columns": self._columns,
            "files": files,
            "counts": {a: counts.get(a, 0) for a in ACTIONS},
            "total_rows": sum(f["rows"] for f in files),
        }
        body = json.dumps(manifest, indent=2).encode()
        request = {"Bucket": self.settings.bucket, "Key": f"{prefix}/manifest.json", "Body": body, "ContentType": "application/json"}
        self._call(lambda: self.s3.put_object(**request, **self._encryption()))
        return manifest

    def forget(self, customer_id: str, email: str | None) -> str:
        return not_supported("a file drop cannot recall files already delivered; ask the importer to delete the customer")

    def _part_keys(self, prefix: str) -> list[str]:
        keys, token = [], None
        while True:
            extra: dict[str, str] = {"ContinuationToken": token} if token else {}
            page = self._call(lambda extra=extra: self.s3.list_objects_v2(Bucket=self.settings.bucket, Prefix=f"{prefix}/part-", **extra))
            keys += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def _encryption(self) -> dict[str, str]:
        s = self.settings
        if s.server_side_encryption is None:
            return {}
        extra = {"ServerSideEncryption": s.server_side_encryption}
        if s.kms_key_id:
            extra["SSEKMSKeyId"] = s.kms_key_id
        return extra

    def _call(self, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        def is_retryable(exc: Exception) -> bool:
            if isinstance(exc, ClientError):
                code = exc.response.get("Error", {}).get("Code", "")
                if code in REFUSED_CODES:
                    raise DestinationError(f"{self.name}: S3 refused ({code}) for bucket {self.settings.bucket}") from None
                return code in RETRYABLE_CODES or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
            return isinstance(exc, BotoCoreError)

        def describe(exc: Exception) -> str:
            if isinstance(exc, ClientError):
                return f"S3 {exc.response.get('Error', {}).get('Code')}"
            return f"S3 {type(exc).__name__}"

        def counted() -> Any:
            with self._requests_lock:
                self._requests += 1
            return call()

        return call_with_retries(
            counted,
            policy=self._policy,
            limiter=self._limiter,
            is_retryable=is_retryable,
            describe=describe,
            sleep=self.runtime.clock.sleep,
        )
