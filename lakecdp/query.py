"""`lakecdp sql`: every declared table queryable by name, through Spark SQL or DuckDB."""

from __future__ import annotations

from lakecdp.clock import SystemClock
from lakecdp.config import Settings
from lakecdp.lake import TABLES
from lakecdp.privacy.access import log_pii_access, mentions_contact_pii
from lakecdp.privacy.roles import Principal, Scope, current_principal

# Profiles, scores and the CRM columns that are not personal data, under one name (both engines).
PROFILE_VIEW = "profile_view"
RUN_SQL_ON_FILES = "spark.sql.runSQLOnFiles"


def run_query(settings: Settings, query: str, *, lake_root: str | None, engine: str, limit: int, principal: Principal | None = None) -> str:
    """Run `query` with each existing table registered under its own name (and `profile_view`); return a text table.

    A query naming a table that holds contact PII is recorded in pii_access_log (who, in which role,
    which tables, when). Without scope pii:read (`principal`, by default the CLI's caller) the
    contact columns read null and the engine may not read files by path, which would skip the masking.
    """
    principal = principal or current_principal()
    root = (lake_root or settings.lake.root).rstrip("/")
    pii = mentions_contact_pii(query)
    if pii:
        log_pii_access(root, settings.lake.storage_options, f"sql ({engine})", None, pii, 0, SystemClock().now(), principal)
    masked = not principal.has(Scope.PII_READ)
    if engine == "duckdb":
        return _duckdb_query(settings, root, query, limit, masked=masked)
    return _spark_query(settings, root, query, limit, masked=masked)


def _duckdb_query(settings: Settings, root: str, query: str, limit: int, *, masked: bool) -> str:
    import duckdb
    from deltalake import DeltaTable

    from lakecdp.lake.files import delta_dataset
    from lakecdp.privacy.masking import duckdb_projection

    options = settings.lake.storage_options or None
    connection = duckdb.connect()
    # Otherwise a query naming any Python variable in scope (a raw, unmasked dataset) would scan it.
    connection.execute("SET python_enable_replacements = false")
    for name in TABLES:
        path = f"{root}/{name}"
        if DeltaTable.is_deltatable(path, storage_options=options):
            # DuckDB scans the Arrow dataset of the table's current Delta snapshot, under a view: no raw name to query.
            relation = connection.from_arrow(delta_dataset(DeltaTable(path, storage_options=options), settings.lake.storage_options))
            projection = duckdb_projection(
                name, relation.columns, dict(zip(relation.columns, map(str, relation.types))), settings.customers
            )
            (relation.project(projection) if masked and projection else relation).create_view(name)
    if masked:
        connection.execute("SET enable_external_access = false")  # read_parquet('lake/customers/...') would unmask
    registered = {name for (name,) in connection.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    if "profile_features" in registered:
        connection.execute(_duckdb_profile_view(connection, registered, settings.customers.rule_columns))
    connection.execute("SET lock_configuration = true")  # the query's own `SET ...;` cannot undo the two above
    return str(connection.sql(query).limit(limit))


def _spark_query(settings: Settings, root: str, query: str, limit: int, *, masked: bool) -> str:
    from lakecdp.lake import lake_for
    from lakecdp.privacy.masking import without_contacts

    lake = lake_for(settings, root=root)

    def read(name: str):
        frame = lake.read(name)
        return without_contacts(frame, name, settings.customers) if masked else frame

    for name in TABLES:
        if lake.exists(name):
            read(name).createOrReplaceTempView(name)
    if lake.exists("profile_features"):
        from lakecdp.profiles.view import profile_view

        view = profile_view(read("profile_features"), read("profile_scores"), read("customers"), settings.customers.rule_columns)
        view.createOrReplaceTempView(PROFILE_VIEW)
    # delta.`path` / parquet.`path` in the query would read the files unmasked; restored after, the session is shared.
    on_files = lake.spark.conf.get(RUN_SQL_ON_FILES, "true") or "true"
    lake.spark.conf.set(RUN_SQL_ON_FILES, "false" if masked else on_files)
    try:
        frame = lake.spark.sql(query)
        return frame._show_string(n=limit, truncate=40)  # type: ignore[operator]  # untyped in pyspark; classic and Connect define it
    finally:
        lake.spark.conf.set(RUN_SQL_ON_FILES, on_files)


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
