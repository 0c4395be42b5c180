"""Import file reading and the reject report (no Spark: the checks are in tests/integration)."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakecdp.cli import build_parser
from lakecdp.importer.commands import FROM_CONF
from lakecdp.importer.readers import ImportFileError, read_rows
from lakecdp.importer.report import default_report_path, top_reasons, write_reject_report

CUSTOMER_COLUMNS = dict(required=("customer_id", "email"), optional=("country", "signup_date", "marketing_opt_in"))


def test_csv_values_are_text_with_row_numbers_and_only_blanks_are_null(tmp_path):
    path = tmp_path / "customers.csv"
    # A byte-order mark, upper-case headers, an extra column, Namibia ("NA") and a blank field.
    path.write_text("\ufeffCustomer_ID,EMAIL,country,notes\nc1,a@example.com,NA,x\nc2,  ,DE,\n", encoding="utf-8")
    rows = read_rows(path, **CUSTOMER_COLUMNS)
    assert rows.table.to_pylist() == [
        {"customer_id": "c1", "email": "a@example.com", "country": "NA", "row": 1},
        {"customer_id": "c2", "email": None, "country": "DE", "row": 2},
    ]
    assert rows.ignored_columns == ["notes"] and rows.unreadable == []


def test_ragged_csv_rows_are_rejected_by_row_not_by_file(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,email\nc1,a@example.com\nc2\n\nc3,c@example.com,extra\nc4,d@example.com\n")
    rows = read_rows(path, **CUSTOMER_COLUMNS)
    assert rows.table.column("row").to_pylist() == [1, 5]
    assert [(r.row, r.column) for r in rows.unreadable] == [(2, "*"), (4, "*")]
    assert "has 1 fields, the header has 2" in rows.unreadable[0].reason


def test_missing_columns_and_unknown_formats_fail_the_file_with_a_fix(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,mail\nc1,a@example.com\n")
    with pytest.raises(ImportFileError, match=r"missing columns \['email'\]. Fix"):
        read_rows(path, **CUSTOMER_COLUMNS)
    with pytest.raises(ImportFileError, match="unknown file type '.xlsx'"):
        (tmp_path / "c.xlsx").write_bytes(b"PK")
        read_rows(tmp_path / "c.xlsx", **CUSTOMER_COLUMNS)
    with pytest.raises(ImportFileError, match="not UTF-8"):
        (tmp_path / "latin1.csv").write_bytes("customer_id,email\nc1,j\xf6rg@example.com\n".encode("latin-1"))
        read_rows(tmp_path / "latin1.csv", **CUSTOMER_COLUMNS)


def test_typed_parquet_columns_become_text_the_checks_read(tmp_path):
    path = tmp_path / "orders.parquet"
    pq.write_table(
        pa.table(
            {
                "order_id": ["o1", None],
                "ordered_at": pa.array([datetime(2026, 10, 1, 10, 0, tzinfo=UTC), None], pa.timestamp("us", "UTC")),
                "signup": pa.array([date(2026, 1, 2), None]),
                "total": [12.5, None],
                "opt_in": [True, None],
            }
        ),
        path,
    )
    rows = read_rows(path, required=("order_id", "ordered_at"), optional=("signup", "total", "opt_in"))
    first, second = rows.table.to_pylist()
    assert first["ordered_at"].startswith("2026-10-01T10:00:00") and first["ordered_at"].endswith("Z")
    assert (first["signup"], first["total"], first["opt_in"], first["row"]) == ("2026-01-02", "12.5", "true", 1)
    assert second == {"order_id": None, "ordered_at": None, "signup": None, "total": None, "opt_in": None, "row": 2}


def test_reject_report_is_sorted_and_rewritten_even_when_empty(tmp_path):
    report = default_report_path(tmp_path / "crm" / "customers.csv")
    assert report == tmp_path / "crm" / "customers.rejects.csv"
    assert write_reject_report(report, [(7, "email", "not a valid email address"), (2, "*", "has 1 fields")]) == 2
    assert list(csv.reader(report.open())) == [
        ["row", "column", "reason"],
        ["2", "*", "has 1 fields"],
        ["7", "email", "not a valid email address"],
    ]
    assert write_reject_report(report, []) == 0
    assert report.read_text() == "row,column,reason\n"


def test_top_reasons_count_rows_per_column_and_reason_most_first():
    rejects = [
        (1, "ordered_at", "timestamp is older than 400 days"),
        (2, "ordered_at", "timestamp is older than 400 days"),
        (2, "currency", "not an ISO 4217 code, e.g. USD"),
        (3, "*", "has 1 fields, the header has 4"),
        (4, "currency", "not an ISO 4217 code, e.g. USD"),
        (4, "total", "is negative"),
    ]
    assert top_reasons(rejects, limit=2) == (
        ("currency", "not an ISO 4217 code, e.g. USD", 2),
        ("ordered_at", "timestamp is older than 400 days", 2),
    )
    assert top_reasons([]) == ()


def parse_orders_max_age(value: str):
    return build_parser().parse_args(["import", "orders", "orders.csv", "--max-age", value]).max_age


def test_max_age_none_lifts_the_limit_and_a_bad_value_is_an_error_naming_the_flag(capsys):
    assert parse_orders_max_age("3650d") == timedelta(days=3650)
    for spelling in ("none", "NONE", " None "):
        assert parse_orders_max_age(spelling) is None, "no age limit"
    assert build_parser().parse_args(["import", "orders", "orders.csv"]).max_age is FROM_CONF, "absent: events.max_age applies"
    with pytest.raises(SystemExit) as exit_info:
        parse_orders_max_age("forever")
    assert exit_info.value.code == 2
    assert "argument --max-age: 'forever' is not a duration" in capsys.readouterr().err
