"""What the stream's flush writes for its landing lines without Spark: bronze rows, contacts, consent facts.

A live line kept for the flush (lakecdp.online.flow) is valid or rejected. The valid ones get their
bronze rows from Python (lakecdp.online.bronze); an identify's contacts and the consent facts of
identify and consent events come from the driver twins of Spark's steps
(events.contacts.identify_contacts, privacy.ledger.entries_of_rows). What a twin refuses goes to
Spark's prepare_batch whole, bronze row included, as do rejected lines. An identify left to Spark
takes every identify of the flush with it: the contacts fold is newest-wins per customer across
all of them, and two folds in turn would not give one fold's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakecdp.events.contacts import identify_contacts
from lakecdp.events.json_text import NotExact, loads
from lakecdp.online.bronze import Line
from lakecdp.privacy.ledger import ConsentRules, entries_of_rows
from lakecdp.privacy.pseudonyms import Pseudonymizer

Build = Callable[[list[Line]], tuple[pa.Table, list[int]]]  # bronze rows of lines, and the lines left out


@dataclass
class Landing:
    """A flush's landing rows split: what Python wrote, and the rows left to Spark."""

    bronze: pa.Table
    contacts: list[dict[str, Any]] = field(default_factory=list)  # contacts_from_identifies rows (times in µs)
    entries: list[dict[str, Any]] = field(default_factory=list)  # consent_ledger rows (times in µs)
    left: list[dict[str, Any]] = field(default_factory=list)


def split_landing(rows: list[dict[str, Any]], build: Build, rules: ConsentRules, pseudonyms: Pseudonymizer, now_us: int) -> Landing:
    """Landing rows (lakecdp.online.flow._landing_row) -> the Python-built part and the rows left to Spark.

    `now_us`: the ledger entries' ingested_at, as Spark's path stamps it.
    """
    valid = [n for n, r in enumerate(rows) if r.get("kind") != "rejected" and "raw" in r]
    bronze, unbuilt = build([(rows[n]["raw"], rows[n]["source_file"], rows[n]["received_at"]) for n in valid])
    left = {valid[k] for k in unbuilt}
    built = [n for n in valid if n not in left]  # the line of each bronze row
    facts = [k for k, n in enumerate(built) if rows[n].get("kind") is not None]
    entries: dict[int, list[dict[str, Any]]] = {}
    contacts: list[dict[str, Any]] = []
    if facts:
        fact_rows = dict(zip(facts, _rows_in_us(bronze.take(pa.array(facts))), strict=True))
        for k, row in fact_rows.items():
            try:
                entries[built[k]] = entries_of_rows([row], rules, now_us)
            except NotExact:
                left.add(built[k])
        identifies = [k for k in facts if rows[built[k]]["kind"] == "identify"]
        all_built = not any(rows[n].get("kind") == "identify" for n in left)
        try:
            if all_built:
                contacts = identify_contacts([(*loads(rows[built[k]]["raw"]), fact_rows[k]["timestamp"]) for k in identifies], pseudonyms)
        except NotExact:
            all_built = False
        if not all_built:
            contacts = []
            left |= {built[k] for k in identifies}
    if left:
        bronze = bronze.filter(pa.array([n not in left for n in built]))
    return Landing(
        bronze=bronze,
        contacts=contacts,
        entries=[e for n, found in entries.items() if n not in left for e in found],
        left=[r for n, r in enumerate(rows) if n in left or r.get("kind") == "rejected" or "raw" not in r],
    )


def _rows_in_us(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow rows as dicts, timestamps as µs since the epoch (how the twins take them)."""
    columns = [pc.cast(c, pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names).to_pylist()
