"""The order-history generator: importer-shaped files, and a planted purchase process the data gives back."""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from lakecdp.generate.catalog import build_catalog
from lakecdp.generate.order_history import (
    FUTURE_ORDERS_FILE,
    ORDERS_FILE,
    SECONDS_PER_DAY,
    TRUTH_COLUMNS,
    TRUTH_FILE,
    OrderHistory,
    OrderHistorySettings,
    generate_order_history,
    main as order_history_cli,
    write_order_history,
)
from lakecdp.generate.settings import CATEGORIES
from lakecdp.importer.orders import MAX_ID_CHARS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from lakecdp.importer.readers import read_rows

SMALL = OrderHistorySettings(customers=3000, weeks=78, seed=11)
# Large enough for the process checks' tolerances (~20k orders), still well under a second to simulate.
LARGE = OrderHistorySettings(customers=20_000, weeks=78, seed=11)
WRITTEN_COLUMNS = ["order_id", "customer_id", "ordered_at", "total", "currency", "category", "product_id"]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("order_history")
    write_order_history(SMALL, out_dir)
    return out_dir


@pytest.fixture(scope="module")
def truth(written) -> dict[str, dict[str, str]]:
    return {row["customer_id"]: row for row in _csv_rows(written / TRUTH_FILE)}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _orders_by_customer(*paths: Path) -> dict[str, list[datetime]]:
    by_customer: dict[str, list[datetime]] = {}
    for path in paths:
        for row in _csv_rows(path):
            by_customer.setdefault(row["customer_id"], []).append(_instant(row["ordered_at"]))
    return {customer: sorted(times) for customer, times in by_customer.items()}


# --- reproducibility ------------------------------------------------------------------------


def test_same_settings_write_byte_identical_files_and_another_seed_does_not(tmp_path):
    settings = replace(SMALL, customers=400)
    for name in ("a", "b"):
        write_order_history(settings, tmp_path / name)
    write_order_history(replace(settings, seed=settings.seed + 1), tmp_path / "reseeded")

    for file_name in (ORDERS_FILE, FUTURE_ORDERS_FILE, TRUTH_FILE):
        assert (tmp_path / "a" / file_name).read_bytes() == (tmp_path / "b" / file_name).read_bytes()
        assert (tmp_path / "a" / file_name).read_bytes() != (tmp_path / "reseeded" / file_name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([ORDERS_FILE, FUTURE_ORDERS_FILE, TRUTH_FILE])


def test_a_customers_history_does_not_depend_on_how_many_are_generated(tmp_path):
    write_order_history(replace(SMALL, customers=300), tmp_path / "few")
    write_order_history(replace(SMALL, customers=5000), tmp_path / "many")

    few, many = _csv_rows(tmp_path / "few" / TRUTH_FILE), _csv_rows(tmp_path / "many" / TRUTH_FILE)
    assert few == many[:300]


def test_fixed_regularity_changes_timing_only():
    drawn = generate_order_history(replace(SMALL, customers=500))
    poisson = generate_order_history(replace(SMALL, customers=500, regularity=1.0))

    assert np.array_equal(drawn.rate, poisson.rate) and np.array_equal(drawn.mean_spend, poisson.mean_spend)
    assert np.array_equal(drawn.first_second, poisson.first_second) and np.array_equal(drawn.dropout, poisson.dropout)
    assert set(poisson.regularity.tolist()) == {1.0} and len(set(drawn.regularity.tolist())) == 500


# --- files in the importer's format ---------------------------------------------------------


@pytest.mark.parametrize("file_name", [ORDERS_FILE, FUTURE_ORDERS_FILE])
def test_order_files_read_as_the_importer_expects(written, file_name):
    rows = read_rows(written / file_name, required=REQUIRED_COLUMNS, optional=OPTIONAL_COLUMNS)
    columns = rows.table.to_pydict()
    products = {product.product_id: product.category for product in build_catalog(SMALL.seed).products}

    assert rows.unreadable == [] and rows.ignored_columns == []
    assert [name for name in rows.table.column_names if name != "row"] == WRITTEN_COLUMNS
    order_ids = columns["order_id"]
    assert len(order_ids) > 100 and len(set(order_ids)) == len(order_ids)
    assert all(order_id and len("import-order-" + order_id) <= MAX_ID_CHARS for order_id in order_ids)
    assert all(re.fullmatch(r"cust_\d{6}", customer_id) for customer_id in columns["customer_id"])
    assert all(re.fullmatch(r"\d+\.\d{2}", total) and float(total) > 0 for total in columns["total"])
    assert set(columns["currency"]) == {"USD"}
    assert all(products[product] == category for product, category in zip(columns["product_id"], columns["category"]))
    ordered_at = [_instant(text) for text in columns["ordered_at"]]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text) for text in columns["ordered_at"])
    assert ordered_at == sorted(ordered_at)
    if file_name == ORDERS_FILE:
        assert SMALL.end - timedelta(weeks=SMALL.weeks) <= min(ordered_at) and max(ordered_at) < SMALL.end
    else:
        assert SMALL.end <= min(ordered_at) and max(ordered_at) < SMALL.end + timedelta(days=91)


def test_order_ids_continue_from_history_into_the_future_file(written):
    history = [row["order_id"] for row in _csv_rows(written / ORDERS_FILE)]
    future = [row["order_id"] for row in _csv_rows(written / FUTURE_ORDERS_FILE)]

    assert history + future == [f"ord_{number:08d}" for number in range(1, len(history) + len(future) + 1)]


def test_truth_has_one_row_per_customer_with_its_columns(written, truth):
    with open(written / TRUTH_FILE, newline="") as handle:
        header = next(csv.reader(handle))

    assert tuple(header) == TRUTH_COLUMNS
    assert list(truth) == [f"cust_{index:06d}" for index in range(1, SMALL.customers + 1)]
    assert {row["favourite_category"] for row in truth.values()} == set(CATEGORIES)


# --- the planted process, as the files show it ----------------------------------------------


def test_first_purchases_fall_in_the_first_third_of_the_window(written, truth):
    orders = _orders_by_customer(written / ORDERS_FILE)
    start = SMALL.end - timedelta(weeks=SMALL.weeks)
    acquisition_end = start + timedelta(weeks=SMALL.weeks) / 3

    for customer, row in truth.items():
        first = _instant(row["first_purchase_at"])
        assert orders[customer][0] == first
        assert start <= first < acquisition_end
    assert len(orders) == SMALL.customers  # every customer has their first order in the history


def test_no_order_after_dropping_out_and_drop_out_only_after_a_repeat_order(written, truth):
    orders = _orders_by_customer(written / ORDERS_FILE, written / FUTURE_ORDERS_FILE)
    dropped = {customer: _instant(row["dropped_at"]) for customer, row in truth.items() if row["dropped_at"]}

    assert 0.05 * SMALL.customers < len(dropped) < 0.5 * SMALL.customers
    for customer, dropped_at in dropped.items():
        # BG/NBD: a customer leaves right after a repeat order, so that order is their last.
        assert orders[customer][-1] == dropped_at
        assert len(orders[customer]) >= 2
        assert dropped_at < SMALL.end


def test_future_orders_are_after_end_and_counted_in_truth(written, truth):
    history = _orders_by_customer(written / ORDERS_FILE)
    future = _orders_by_customer(written / FUTURE_ORDERS_FILE)

    assert len(future) > 0.03 * SMALL.customers
    for customer, row in truth.items():
        assert int(row["orders_in_history"]) == len(history[customer])
        times = future.get(customer, [])
        assert all(time >= SMALL.end for time in times)
        for days in (7, 28, 91):
            assert int(row[f"orders_after_end_{days}d"]) == sum(time < SMALL.end + timedelta(days=days) for time in times)


def _gaps_in_rate_units(history: OrderHistory, *, min_expected_orders: float) -> np.ndarray:
    """Times between a customer's consecutive orders times their planted lambda (history and future).

    Only customers expected to place `min_expected_orders` in the simulated span: a rare buyer's gaps
    that fit in the span are its short ones, which would pull the spread down.
    """
    in_customer_order = np.lexsort((history.order_second, history.order_customer))
    customer = history.order_customer[in_customer_order]
    day = history.order_second[in_customer_order] / SECONDS_PER_DAY
    is_gap = customer[1:] == customer[:-1]
    gap, owner = np.diff(day)[is_gap], customer[1:][is_gap]
    span_days = history.settings.weeks * 7 + 91
    is_frequent = history.rate[owner] * span_days >= min_expected_orders
    return gap[is_frequent] * history.rate[owner[is_frequent]]


@pytest.mark.parametrize(
    ("regularity", "expected_cv", "tolerance"),
    # Tolerances: ~8k gaps each; the sample CV's spread is ~0.02 for k=1 (exponential tails), ~0.01 for k=4.
    [(1.0, 1.0, 0.08), (4.0, 0.5, 0.04)],
)
def test_regularity_sets_the_coefficient_of_variation_between_orders(regularity, expected_cv, tolerance):
    history = generate_order_history(replace(LARGE, regularity=regularity))
    gaps = _gaps_in_rate_units(history, min_expected_orders=10)

    assert gaps.size > 5000
    assert gaps.mean() == pytest.approx(1.0, abs=0.06)  # mean gap is 1 / lambda whatever k
    assert gaps.std() / gaps.mean() == pytest.approx(expected_cv, abs=tolerance)


def test_planted_purchase_rate_is_recovered_from_the_orders():
    """Repeat orders per day of being alive match lambda: sum(repeat orders) ~ sum(lambda * days alive).

    Counted over every customer up to min(end, dropped_at). Alive customers alone would not do: each
    order risks dropping out, so those still alive are the ones that bought less than their lambda
    (about 12% less with the defaults).
    """
    history = generate_order_history(replace(LARGE, regularity=1.0))  # Poisson timing: exact in expectation
    end = history.settings.end_second
    in_history = history.is_history
    repeat_orders = np.bincount(history.order_customer[in_history], minlength=history.rate.size) - 1
    is_dropped = (history.dropped_second >= 0) & (history.dropped_second < end)
    days_alive = (np.where(is_dropped, history.dropped_second, end) - history.first_second) / SECONDS_PER_DAY

    assert repeat_orders.sum() > 10_000
    assert repeat_orders.sum() / (history.rate * days_alive).sum() == pytest.approx(1.0, abs=0.05)


def _rank_correlation(xs: np.ndarray, ys: np.ndarray) -> float:
    def ranks(values: np.ndarray) -> np.ndarray:
        ranked = np.empty(values.size)
        ranked[values.argsort(kind="stable")] = np.arange(values.size)
        _, tie_group = np.unique(values, return_inverse=True)  # ties (many equal order counts) share their mean rank
        return (np.bincount(tie_group, weights=ranked) / np.bincount(tie_group))[tie_group]

    return float(np.corrcoef(ranks(xs), ranks(ys))[0, 1])


def test_spend_is_independent_of_frequency_and_follows_the_planted_mean():
    """A customer's observed mean order value is unrelated to how often they buy (Gamma-Gamma's assumption).

    Pearson, not rank correlation: the mean of n gamma draws has its median rise towards its mean as n
    grows, so ranks correlate with n (~0.03 here) even when the expected value does not.
    """
    history = generate_order_history(LARGE)
    in_history = history.is_history
    customers = history.rate.size
    orders = np.bincount(history.order_customer[in_history], minlength=customers)
    mean_value = np.bincount(history.order_customer[in_history], weights=history.order_total[in_history], minlength=customers) / orders
    settings = history.settings
    planted_mean = settings.spend_p * settings.spend_v / (settings.spend_q - 1)

    # Over seeds 11-18 these correlations stayed within +-0.02.
    assert abs(np.corrcoef(mean_value, orders)[0, 1]) < 0.03
    assert abs(np.corrcoef(mean_value, np.log(history.rate))[0, 1]) < 0.03
    for fewest, most in ((1, 1), (2, 3), (4, orders.max())):
        buying_this_often = (orders >= fewest) & (orders <= most)
        assert mean_value[buying_this_often].mean() == pytest.approx(planted_mean, rel=0.05)
    assert _rank_correlation(mean_value, history.mean_spend) > 0.6
    assert history.mean_spend.mean() == pytest.approx(planted_mean, rel=0.05)


def test_orders_are_mostly_in_the_favourite_category():
    history = generate_order_history(SMALL)
    in_favourite = np.mean(history.order_category == history.favourite[history.order_customer])

    # The other 30% are uniform over all categories, the favourite included.
    assert in_favourite == pytest.approx(0.7 + 0.3 / len(CATEGORIES), abs=0.02)


def test_default_history_has_a_realistic_repeat_buyer_share():
    history = generate_order_history(LARGE)
    orders = np.bincount(history.order_customer[history.is_history], minlength=history.rate.size)

    assert 0.30 < np.mean(orders >= 2) < 0.45
    assert 60 < history.order_total.mean() < 80


# --- CLI and settings -----------------------------------------------------------------------


def test_cli_writes_the_files_and_prints_one_line_of_counts(tmp_path, capsys):
    exit_code = order_history_cli(
        ["--customers", "200", "--weeks", "20", "--seed", "5", "--end", "2026-06-01T00:00:00Z", "--regularity", "1", "--currency", "EUR"]
        + ["--out", str(tmp_path)]
    )
    output = capsys.readouterr().out

    assert exit_code == 0
    assert len(output.strip().splitlines()) == 1
    orders = _csv_rows(tmp_path / ORDERS_FILE)
    assert f"wrote {len(orders)} orders of 200 customers (20 weeks to 2026-06-01T00:00:00+00:00" in output
    assert {row["currency"] for row in orders} == {"EUR"}
    assert max(_instant(row["ordered_at"]) for row in orders) < datetime(2026, 6, 1, tzinfo=UTC)
    assert {row["regularity"] for row in _csv_rows(tmp_path / TRUTH_FILE)} == {"1"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_invalid_settings_fail_loudly(capsys):
    with pytest.raises(ValueError, match="timezone-aware"):
        OrderHistorySettings(end=datetime(2026, 11, 1))
    with pytest.raises(ValueError, match="regularity must be > 0"):
        OrderHistorySettings(regularity=0.0)
    with pytest.raises(ValueError, match="ISO 4217"):
        OrderHistorySettings(currency="usd")
    with pytest.raises(SystemExit, match="customers must be >= 1"):
        order_history_cli(["--customers", "0", "--out", "unused"])
