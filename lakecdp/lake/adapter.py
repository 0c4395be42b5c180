"""`Lake`: the only way lakecdp reads and writes tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, functions as F

from lakecdp.clock import SystemClock
from lakecdp.config.models import EncryptionSettings, LakeSettings, Settings
from lakecdp.lake.crypto import (
    FINGERPRINT_PURPOSE,
    KEY_ENV,
    ContactCipher,
    EncryptionKeyError,
    cipher_for,
    open_contacts,
    plain_rows,
    seal_contacts,
    sealed_columns,
)
from lakecdp.lake.delta_rs import DeltaRsEngine
from lakecdp.lake.engine import AppTxn, LakeEngine, LakeError, Where, where_filters
from lakecdp.lake.files import read_delta
from lakecdp.lake.tables import TableSpec, table


class Lake:
    """Tables under one root, each a folder named after the table."""

    def __init__(
        self, root: str, engine: LakeEngine, *, encryption: EncryptionSettings | None = None, pii_columns: Sequence[str] = ()
    ) -> None:
        self.root = root if "://" in root else os.path.abspath(root)
        self.engine = engine
        self.encryption = encryption if encryption is not None else EncryptionSettings()
        self._pii_columns = tuple(pii_columns)
        self._pseudonyms = None
        self._cipher: ContactCipher | None = None
        self._keys: dict[str, list[str]] = {}  # customer_id -> wrapped data keys, at customer_keys version _keys_version
        self._keys_version: int | None = None
        self._rows_writer: DeltaRsEngine | None = None  # append_rows / insert_rows on a delta-spark lake

    @property
    def pseudonyms(self):
        """The Pseudonymizer every outside id goes through before it is stored (lakecdp.privacy.pseudonyms);
        loaded on first use and checked against the key fingerprint the lake records."""
        if self._pseudonyms is None:
            from lakecdp.privacy.pseudonyms import check_lake_key, load_pseudonymizer

            pseudonyms = load_pseudonymizer()
            check_lake_key(self, pseudonyms, SystemClock().now())
            self._pseudonyms = pseudonyms
        return self._pseudonyms

    @property
    def cipher(self) -> ContactCipher | None:
        """The contact columns' cipher (None: encryption is off); the master key is loaded on first use and
        checked against the fingerprint the lake records."""
        if self._cipher is None and self.encryption.enabled:
            cipher = cipher_for(self.encryption, self._pii_columns)
            if cipher is not None:
                self._check_master_key(cipher)
            self._cipher = cipher
        return self._cipher

    def with_plain_contacts(self, customers: DataFrame) -> DataFrame:
        """Rows of `customers` (any selection keeping customer_id) with their contact columns decrypted;
        a customer whose data key was erased reads as null contacts."""
        cipher = self.cipher
        if cipher is None or not sealed_columns(cipher, customers):
            return customers
        keys = (
            self.read("customer_keys")
            if self.exists("customer_keys")
            else self.spark.createDataFrame([], self.spec("customer_keys").schema)
        )
        return open_contacts(cipher, customers, keys)

    def _sealed(self, name: str, df: DataFrame) -> DataFrame:
        """`df` as stored: a write to customers gets its contact values encrypted (new customers get a data key first)."""
        cipher = self.cipher if name == "customers" else None
        columns = sealed_columns(cipher, df) if cipher is not None else []
        if cipher is None or not columns:
            return df
        has_contact = F.coalesce(*[F.col(c) for c in columns]).isNotNull()
        ids = sorted(r.customer_id for r in df.filter(has_contact).select("customer_id").distinct().collect())
        return seal_contacts(cipher, df, self._data_keys(cipher, ids)) if ids else df

    def _sealed_rows(self, name: str, rows: pa.Table) -> pa.Table:
        """`_sealed` for Arrow rows on the driver (Lake.merge_rows and the like), without Spark."""
        cipher = self.cipher if name == "customers" else None
        columns = [c for c in cipher.columns if c in rows.column_names and pa.types.is_string(rows.schema.field(c).type)] if cipher else []
        if cipher is None or not columns:
            return rows
        contacts = rows.select(["customer_id", *columns]).to_pandas()
        ids = sorted(set(contacts.dropna(how="all", subset=columns)["customer_id"]))
        if not ids:
            return rows
        sealed = cipher.transform_frame(contacts, columns, seal=True, keys=self._data_keys(cipher, ids))
        for column in columns:
            rows = rows.set_column(rows.column_names.index(column), column, pa.array(sealed[column].tolist(), pa.string()))
        return rows

    def _data_keys(self, cipher: ContactCipher, ids: Sequence[str]) -> dict[str, list[str]]:
        """customer_id -> wrapped data keys for `ids`, creating a key for each customer without one.

        Kept in memory while customer_keys is at the version this process last saw (so a stream batch
        reads the table only for customers it has not met; an erasure elsewhere changes the version)."""
        version = self.version("customer_keys")
        if version != self._keys_version:
            self._keys, self._keys_version = {}, version
        unknown = [i for i in ids if i not in self._keys]
        if unknown and version >= 0:
            for row in self._key_rows(unknown):
                self._keys.setdefault(row["customer_id"], []).append(row["wrapped_key"])
        new = [i for i in unknown if i not in self._keys]
        if new:
            now = SystemClock().now()
            wrapped = [cipher.new_wrapped_key(i) for i in new]
            # An append, not a MERGE: two writers racing may both store a key for one customer; every key is
            # kept, sealing takes the first in order and reading tries each.
            self._append_keys({"customer_id": new, "wrapped_key": wrapped, "created_at": [now] * len(new)})
            self._keys.update((customer_id, [key]) for customer_id, key in zip(new, wrapped))
            self._keys_version = self.version("customer_keys")
        return {i: sorted(self._keys[i]) for i in ids}

    # customer_keys is read and appended through delta-rs on either engine: a stream batch's lookup of a few
    # ids and its append take tens of milliseconds that way, against about a second as Spark jobs.
    def _key_rows(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return self._plain_rows("customer_keys", ["customer_id", "wrapped_key"], {"customer_id": list(ids)})

    def _append_keys(self, columns: dict[str, list[Any]]) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        from lakecdp.lake.delta_rs import arrow_schema

        self.create("customer_keys")
        rows = pa.table(columns, schema=arrow_schema(self.spec("customer_keys")))
        write_deltalake(self.path("customer_keys"), rows, mode="append", storage_options=self.storage_options or None)

    def _check_master_key(self, cipher: ContactCipher) -> None:
        """Record the master key's fingerprint in a new lake; refuse a key that is not the lake's."""
        if self.exists("lake_keys"):
            stored = {r.fingerprint for r in self.read("lake_keys").filter(F.col("purpose") == FINGERPRINT_PURPOSE).collect()}
            if stored and cipher.fingerprint not in stored:
                raise EncryptionKeyError(
                    f"the master key is not the one the lake at {self.root} was built with (fingerprint {cipher.fingerprint}, "
                    f"lake has {', '.join(sorted(stored))}): its data keys would not unwrap. Fix: set lake.encryption.master_key "
                    f"(or ${KEY_ENV}) to the lake's key"
                )
            if stored:
                return
        row = {"purpose": FINGERPRINT_PURPOSE, "fingerprint": cipher.fingerprint, "recorded_at": SystemClock().now()}
        self.append("lake_keys", self.spark.createDataFrame([row], self.spec("lake_keys").schema))

    @property
    def spark(self) -> SparkSession:
        return self.engine.spark

    @property
    def storage_options(self) -> dict[str, str]:
        return self.engine.storage_options

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{table(name).name}"

    def spec(self, name: str) -> TableSpec:
        return table(name)

    def exists(self, name: str) -> bool:
        return self.engine.exists(self.path(name))

    def create(self, name: str) -> None:
        """Create the table empty (no-op when it exists)."""
        self.engine.create(table(name), self.path(name))

    def read(self, name: str, *, version: int | None = None, as_of: datetime | None = None) -> DataFrame:
        """The table as a Spark DataFrame; optionally as of a version or a point in time."""
        if version is not None and as_of is not None:
            raise LakeError(f"table {name}: pass version or as_of, not both")
        return self.engine.read(table(name), self.path(name), version=version, as_of=as_of)

    def rows(self, name: str, columns: Sequence[str] | None = None, where: Where | None = None) -> list[dict[str, Any]]:
        """The table's current rows (`columns`, those matching `where`) as Python dicts, timestamps naive in
        UTC as Spark's rows give them, read through delta-rs on either engine: no Spark job, for the few
        rows a step on the driver needs (the trigger dispatcher's due customers). A table not created yet
        has no rows; `customers` is refused (its contacts are sealed: `contact_rows`)."""
        if name == "customers":
            raise LakeError("customers rows hold sealed contacts: read them with Lake.contact_rows")
        return self._plain_rows(name, columns, where)

    def contact_rows(self, ids: Sequence[str], columns: Sequence[str]) -> list[dict[str, Any]]:
        """`customers` rows of `ids` (customer_id and `columns`) with their contact columns decrypted, through
        delta-rs (as `rows`); a customer whose data key was erased reads as null contacts."""
        rows = self._plain_rows("customers", ["customer_id", *[c for c in columns if c != "customer_id"]], {"customer_id": list(ids)})
        cipher = self.cipher
        if cipher is None or not rows:
            return rows
        wrapped: dict[str, list[str]] = {}
        for key in self._key_rows(ids):
            wrapped.setdefault(key["customer_id"], []).append(key["wrapped_key"])
        return plain_rows(cipher, rows, wrapped)

    def _plain_rows(self, name: str, columns: Sequence[str] | None, where: Where | None) -> list[dict[str, Any]]:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        # Opened, not asked first (`exists`): one listing of the log, not two; a trigger dispatch reads ten tables.
        try:
            stored_table = DeltaTable(self.path(name), storage_options=self.storage_options or None)
        except TableNotFoundError:
            return []
        stored = read_delta(
            stored_table,
            list(columns) if columns is not None else None,
            where_filters(where) if where else None,
            self.storage_options,
        )
        naive = [pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in stored.schema]
        return stored.cast(pa.schema(naive)).to_pylist()

    def append(self, name: str, df: DataFrame, *, txn: AppTxn | None = None) -> int:
        """Append rows and return how many were written; with `txn`, a replay of an already
        committed (app_id, version) is a no-op that writes 0."""
        spec = table(name)
        if not self.exists(name):
            self.engine.create(spec, self.path(name))
        return self.engine.append(spec, self.path(name), self._sealed(name, df), txn)

    def merge(
        self,
        name: str,
        df: DataFrame,
        *,
        txn: AppTxn | None = None,
        update_columns: Sequence[str] | None = None,
        delete_missing: Where | None = None,
    ) -> None:
        """Upsert on the table's keys.

        Args:
            update_columns: columns a match overwrites (None = all, [] = none: insert-only).
            delete_missing: also delete target rows matching this filter that the source lacks,
                in the same commit (e.g. {"segment": [...]} to replace those segments' members).
        """
        self.engine.merge(table(name), self.path(name), self._sealed(name, df), txn, update_columns, delete_missing)

    # Rows built on the driver (the stream's flush of its online state) are written through delta-rs on
    # either engine: tenths of a second for a few thousand rows, against seconds of Spark jobs (planning,
    # a task per partition, Delta's MERGE stages) competing with the live batches for the same cores.
    # delta-rs's MERGE writes string views, which pyarrow readers read through lakecdp.lake.files.scan.
    def append_rows(self, name: str, rows: pa.Table, *, txn: AppTxn | None = None) -> int:
        """`append` of Arrow rows, through delta-rs (no Spark job)."""
        return self._rows_engine().append_arrow(table(name), self.path(name), self._sealed_rows(name, rows), txn)

    def insert_rows(self, name: str, rows: pa.Table, *, txn: AppTxn | None = None) -> int:
        """The Arrow rows whose keys `name` lacks, appended through delta-rs (an insert-only merge without
        a Spark job); returns rows appended. A writer appending the same key meanwhile would add it twice:
        for tables one writer fills (the stream's flush) or whose keys derive from their content."""
        return self._rows_engine().insert_arrow(table(name), self.path(name), self._sealed_rows(name, rows), txn)

    def merge_rows(
        self,
        name: str,
        rows: pa.Table,
        *,
        txn: AppTxn | None = None,
        update_columns: Sequence[str] | None = None,
        delete_missing: Where | None = None,
    ) -> None:
        """`merge` of Arrow rows, through delta-rs (no Spark job)."""
        rows = self._sealed_rows(name, rows)
        self._rows_engine().merge_arrow(table(name), self.path(name), rows, txn, update_columns, delete_missing)

    def _rows_engine(self) -> DeltaRsEngine:
        if isinstance(self.engine, DeltaRsEngine):
            return self.engine
        if self._rows_writer is None:
            self._rows_writer = DeltaRsEngine(self.spark, self.storage_options)
        return self._rows_writer

    def overwrite(self, name: str, df: DataFrame, *, txn: AppTxn | None = None) -> None:
        """Replace the whole table's contents in one commit (older versions stay readable)."""
        self.engine.overwrite(table(name), self.path(name), self._sealed(name, df), txn)

    def delete(self, name: str, where: Where) -> int:
        """Delete rows matching {column: value | [values]}; returns the number deleted."""
        _check_columns(name, where)
        return self.engine.delete(table(name), self.path(name), where)

    def overwrite_partition(self, name: str, df: DataFrame, partition: Where, *, txn: AppTxn | None = None) -> None:
        """Replace exactly the given partition(s) with `df` (an idempotent rewrite for reruns)."""
        self.engine.overwrite_partition(table(name), self.path(name), self._sealed(name, df), partition, txn)

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.engine.history(self.path(name))

    def version(self, name: str) -> int:
        """Current table version, -1 when the table does not exist yet."""
        return self.engine.version(self.path(name))

    def committed_version(self, name: str, app_id: str) -> int | None:
        """The last version committed by application `app_id`, None if it never committed."""
        return self.engine.committed_version(self.path(name), app_id)

    def vacuum(self, name: str, *, retention_hours: int = 168) -> list[str]:
        return self.engine.vacuum(self.path(name), retention_hours)

    def optimize(self, name: str) -> dict[str, Any]:
        return self.engine.optimize(table(name), self.path(name))

    def checkpoint(self, name: str) -> int | None:
        """A Delta checkpoint at the current version (faster log replay for every reader); returns that
        version, or None when the engine writes checkpoints itself (delta-spark, every 10 commits)."""
        return self.engine.checkpoint(self.path(name))

    def purge_history(self, name: str) -> None:
        """Forget every old version: vacuum all unreferenced files and expire the log (erasure)."""
        self.engine.purge_history(self.path(name))


def lake_for(settings: Settings, *, root: str | None = None) -> Lake:
    """The configured lake (`root` overrides lake.root) on the process's one SparkSession: how every
    command, task and job opens it, so each gets the same session config and engine."""
    from lakecdp.spark import session_for

    return open_lake(session_for(settings), settings.lake, root=root, pii_columns=settings.customers.pii_columns)


def open_lake(spark: SparkSession, settings: LakeSettings, *, root: str | None = None, pii_columns: Sequence[str] = ()) -> Lake:
    """The Lake for the configured engine (lake.engine: delta-spark by default)."""
    if settings.engine == "delta-spark":
        from lakecdp.lake.delta_spark import DeltaSparkEngine

        engine: LakeEngine = DeltaSparkEngine(spark, settings.storage_options)
    else:
        engine = DeltaRsEngine(spark, settings.storage_options)
    root = root or settings.root
    if root.startswith(("s3://", "s3a://")):
        from lakecdp.lake.files import configure_s3a

        configure_s3a(spark, settings.storage_options)
    return Lake(root, engine, encryption=settings.encryption, pii_columns=pii_columns)


def _check_columns(name: str, where: Where) -> None:
    unknown = [c for c in where if c not in table(name).columns]
    if unknown:
        raise LakeError(f"table {name}: no columns {unknown}")
