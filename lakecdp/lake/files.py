"""Files under a lake root, local or s3://, through pyarrow's filesystems: artifacts, and Delta snapshots read to Arrow."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs
from pyarrow.parquet import filters_to_expression

if TYPE_CHECKING:
    from deltalake import DeltaTable


def filesystem(root: str, storage_options: Mapping[str, str] | None = None) -> tuple[fs.FileSystem, str]:
    """(filesystem, base path) for a local folder or an s3:// root with delta-rs style storage options."""
    if "://" not in root or root.startswith("file://"):
        return fs.LocalFileSystem(), os.path.abspath(root.removeprefix("file://"))
    if root.startswith(("s3://", "s3a://")):
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
        return fs.S3FileSystem(**kwargs), root.split("://", 1)[1].rstrip("/")
    filesystem_, path = fs.FileSystem.from_uri(root)
    return filesystem_, path


def delta_dataset(table: DeltaTable, storage_options: Mapping[str, str] | None = None) -> ds.Dataset:
    """A Delta table's current snapshot as a pyarrow dataset, read through pyarrow's own filesystem.

    deltalake's default reads through a filesystem handler written in Python. pyarrow's read-ahead can
    then still hold Python buffers when the interpreter exits, and the process aborts with "terminate
    called without an active exception" (seen with deltalake 1.6.6 and pyarrow 26.0.1 after
    `lakecdp status`). pyarrow's native filesystems hold no Python objects.
    """
    files, base = filesystem(table.table_uri, storage_options)
    return table.to_pyarrow_dataset(filesystem=fs.SubTreeFileSystem(base, files))


def read_delta(
    table: DeltaTable,
    columns: list[str] | None = None,
    filters: list[tuple[str, str, Any]] | ds.Expression | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pa.Table:
    """The table's current rows (only `columns`; `filters` as DNF tuples or an expression), see `delta_dataset`."""
    dataset = delta_dataset(table, storage_options)
    if isinstance(filters, list) and any(isinstance(f, tuple) and f[1] == "in" and not len(f[2]) for f in filters):
        return dataset.schema.empty_table().select(columns or dataset.schema.names)  # `in` nothing: pyarrow cannot type []
    expression = filters_to_expression(filters) if isinstance(filters, list) else filters
    return scan(dataset, columns, expression)


def scan(dataset: ds.Dataset, columns: list[str] | None = None, where: ds.Expression | None = None) -> pa.Table:
    """`dataset.to_table(columns, filter=where)`, also over files whose columns are string views.

    delta-rs's MERGE and DELETE (deltalake 1.6.6) write Parquet whose Arrow schema says `string_view`
    (DataFusion's view types, kept on write since delta-io/delta-rs#4302). pyarrow 26 has no kernel that
    compares them with the table's strings, so a filter pushed into such a file fails with
    `equal(string, string_view)`. Those files are read whole, cast to the table's schema, and filtered after.
    """
    if where is None:
        return dataset.to_table(columns=columns)
    if not isinstance(dataset, ds.FileSystemDataset):
        return dataset.to_table(columns=columns, filter=where)
    fragments = list(dataset.get_fragments(filter=where))  # pruned by partition values only
    viewed: list[ds.FileFragment] = [f for f in fragments if any(_is_view(field.type) for field in f.physical_schema)]
    if not viewed:
        return dataset.to_table(columns=columns, filter=where)
    seen = {f.path for f in viewed}
    plain = [f for f in fragments if f.path not in seen]

    def subset(files: list[ds.FileFragment]) -> ds.FileSystemDataset:
        return ds.FileSystemDataset(files, dataset.schema, dataset.format, dataset.filesystem)

    after = subset(viewed).to_table().filter(where).select(columns or dataset.schema.names)
    return pa.concat_tables([subset(plain).to_table(columns=columns, filter=where), after]) if plain else after


def _is_view(type_: pa.DataType) -> bool:
    return pa.types.is_string_view(type_) or pa.types.is_binary_view(type_)


def read_text(path: str, storage_options: Mapping[str, str] | None = None) -> str:
    """A small file's text, local or on S3."""
    files, base = filesystem(path, storage_options)
    with files.open_input_stream(base) as stream:
        return stream.read().decode("utf-8")


def exists(path: str, storage_options: Mapping[str, str] | None = None) -> bool:
    """Whether a file or folder exists, local or on S3."""
    files, base = filesystem(path, storage_options)
    return files.get_file_info(base).type != fs.FileType.NotFound


def s3a_conf(storage_options: Mapping[str, str] | None) -> dict[str, str]:
    """Hadoop S3A settings for the delta-rs style storage options of an s3:// lake (endpoint, keys,
    region): so that Spark (delta-spark, stream checkpoints) and delta-rs reach the same store."""
    options = {k.upper(): v for k, v in (storage_options or {}).items()}
    conf: dict[str, str] = {}
    endpoint = options.get("AWS_ENDPOINT_URL") or options.get("AWS_ENDPOINT")
    if endpoint:
        # A custom endpoint (MinIO, moto, Ceph) serves buckets as paths, not as host names.
        conf |= {
            "fs.s3a.endpoint": endpoint,
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https://")).lower(),
        }
    if options.get("AWS_ACCESS_KEY_ID"):
        conf |= {"fs.s3a.access.key": options["AWS_ACCESS_KEY_ID"], "fs.s3a.secret.key": options.get("AWS_SECRET_ACCESS_KEY", "")}
    region = options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION")
    if region:
        conf["fs.s3a.endpoint.region"] = region
    return conf


def configure_s3a(spark: Any, storage_options: Mapping[str, str] | None) -> None:
    """Set S3A's endpoint, keys and region on the session's Hadoop configuration (before its first s3:// access)."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_conf(storage_options).items():
        hadoop.set(key, value)
