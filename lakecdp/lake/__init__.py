"""The lake adapter: every table declared once, one interface over two Delta engines."""

from lakecdp.lake.adapter import Lake, lake_for, open_lake
from lakecdp.lake.engine import AppTxn, LakeError
from lakecdp.lake.tables import TABLES, TableSpec, table

__all__ = ["AppTxn", "Lake", "LakeError", "TABLES", "TableSpec", "lake_for", "open_lake", "table"]
