"""`lakecdp sql`: every declared table queryable by name, through Spark SQL or DuckDB."""

from __future__ import annotations

from lakecdp.clock import SystemClock
from lakecdp.config import Settings
from lakecdp.lake import TABLES
from lakecdp.privacy.access import log_pii_access, mentions_contact_pii

# Profiles, scores and the CRM columns that are not personal data, under one name (both engines).
PROFILE_VIEW = "profile_view"


def run_query(settings: Settings, query: str, *, lake_root: str | None, engine: str, limit: int) -> str:
    """Run `query` with each existing table registered under its own name (and, on Spark, `profile_view`); return a text table.

    A query naming a table that holds contact PII is recorded in pii_access_log (who, which tables, when).
    """
    root = (lake_root or settings.lake.root).rstrip("/")
    pii = mentions_contact_pii(query)
    if pii:
        log_pii_access(root, settings.lake.storage_options, f"sql ({engine})", None, pii, 0, SystemClock().now())
    if engine == "duckdb":
        import duckdb
        from deltalake import DeltaTable

        from lakecdp.lake.files import delta_dataset

        connection = duckdb.connect()
        for name in TABLES:
            path = f"{root}/{name}"
            if DeltaTable.is_deltatable(path, storage_options=settings.lake.storage_options or None):
                # DuckDB scans the Arrow dataset of the table's current Delta snapshot.
                dataset = delta_dataset(
                    DeltaTable(path, storage_options=settings.lake.storage_options or None), settings.lake.storage_options
                )
                connection.register(name, dataset)
        registered = {name for (name,) in connection.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        if "profile_features" in registered:
            connection.execute(_duckdb_profile_view(connection, registered, settings.customers.rule_columns))
        return str(connection.sql(query).limit(limit))

    from lakecdp.lake import lake_for

    lake = lake_for(settings, root=root)
    for name in TABLES:
        if lake.exists(name):
            lake.read(name).createOrReplaceTempView(name)
    if lake.exists("profile_features"):
        from lakecdp.profiles.view import profile_view

        view = profile_view(
            lake.read("profile_features"), lake.read("profile_scores"), lake.read("customers"), settings.customers.rule_columns
        )
        view.createOrReplaceTempView(PROFILE_VIEW)
    frame = lake.spark.sql(query)
    return frame._show_string(n=limit, truncate=40)  # type: ignore[operator]  # untyped in pyspark; classic and Connect define it


_DUCKDB_TYPES = {"string": "VARCHAR", "int": "INTEGER", "double": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE"}


def _duckdb_profile_view(connection, registered: set[str], columns: dict[str, str]) -> str:
    """`profile_view` for DuckDB: the statement that makes the Spark engine's view (profiles.view.profile_view)."""
    select, joins = ["p.*"], []
    if "profile_scores" in registered:
        select.append("s.* EXCLUDE (customer_id, scored_at)")
        joins.append("LEFT JOIN profile_scores s USING (customer_id)")
    present: set[str] = set()
    if "customers" in registered:
        present = set(connection.sql("SELECT * FROM customers LIMIT 0").columns)
        joins.append("LEFT JOIN customers c USING (customer_id)")
    fields = ", ".join(f"{name} := CAST({'c.' + name if name in present else 'NULL'} AS {_DUCKDB_TYPES[t]})" for name, t in columns.items())
    select.append(f"struct_pack({fields}) AS customer" if fields else "NULL AS customer")
    # Every name here is a declared table or a lower_snake_case attribute conf validated, and no value is spliced in.
    return f"CREATE VIEW {PROFILE_VIEW} AS SELECT {', '.join(select)} FROM profile_features p {' '.join(joins)}"  # nosec B608
