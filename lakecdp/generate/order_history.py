"""Seeded order-only histories with a planted purchase process, for benchmarking purchase-intent models.

`python -m lakecdp.generate.order_history --customers N --weeks W --seed S --end ISO --out DIR`
writes `orders.csv` (the format `lakecdp import orders` reads), `future_orders.csv` (the orders of
the 91 days after `end`, same format) and `truth.csv` (each customer's planted parameters and how
many orders they place in the 7, 28 and 91 days after `end`). Same settings give byte-identical files.
Import the history with `lakecdp import orders DIR/orders.csv --as-of END --max-age none`: its
oldest orders are older than events.max_age (400 days) allows, and any order after the import's
clock would be quarantined as stamped in the future.

The process, customer by customer:

* Acquisition. First purchases are uniform over the first `acquisition_share` of the window (a
  third by default), so the file holds many weekly cohorts, as CDNOW's 1997 cohort of Fader, Hardie
  and Lee (2005) did over its first 12 weeks, and every customer still has at least two thirds of
  the window (52 weeks of a 78-week one) of history before `end`.
* Purchasing while alive. Each customer has a rate lambda (orders per day) drawn from a gamma
  distribution with shape r and rate alpha. Time between orders is gamma with shape k and rate
  k * lambda, so its mean stays 1 / lambda and its coefficient of variation is 1 / sqrt(k): k = 1 is
  the Poisson purchasing of the NBD, k > 1 the more regular timing that Platzer and Reutterer's
  Pareto/GGG ("Ticking away the moments", Marketing Science, 2016) models and reports in real
  purchase data, k < 1 clumpy buying. Like the Pareto/GGG, k varies between customers (gamma with shape t and rate
  gamma, mean 2 by default); `regularity` fixes it for everyone instead.
* Drop-out. After each repeat order the customer leaves for good with probability p, drawn per
  customer from a beta(a, b): the BG/NBD of Fader, Hardie and Lee ("Counting your customers the
  easy way", Marketing Science, 2005), which (unlike the Pareto/NBD) cannot lose a customer before
  their first repeat order. `dropped_at` is the time of that last order. With `regularity` 1 the
  history is exactly a BG/NBD one, so the BG/NBD baseline is then the true model; with the default
  drawn k it is misspecified in timing only.
* Spend. Order values are gamma with shape p_spend and a customer-specific rate nu, and nu is gamma
  with shape q and rate v across customers: the Gamma-Gamma model of Fader, Hardie and Lee ("RFM
  and CLV: using iso-value curves", Journal of Marketing Research, 2005, after Colombo and Jiang,
  1999), drawn independently of lambda, p and k as that model assumes. A customer's mean order
  value is p_spend / nu. The model describes repeat orders; here the first order follows it too.
* Basket. Each customer has a favourite category (uniform over the behaviour generator's
  CATEGORIES) that most orders are in; the product is one of that category's catalog products
  (`build_catalog(seed)`, the catalog `python -m lakecdp.generate` writes for the same seed), picked
  by its popularity. The product only labels the order: `total` is the Gamma-Gamma draw.

The history is simulated on to 91 days after `end`: orders before `end` go to orders.csv, the rest
to future_orders.csv and truth's `orders_after_end_*` counts. A customer still alive at `end` has
an empty `dropped_at` even when they drop out in those 91 days.

Defaults and why (all are `OrderHistorySettings` fields):

* r = 0.243, a = 0.793, b = 2.426 are CDNOW's BG/NBD estimates (Fader, Hardie and Lee 2005).
  Their alpha, 4.414 weeks (31 days), gives a 78-week history of this design ~47% repeat buyers
  (customers with 2+ orders before `end`); industry surveys of online shops commonly quote 20-40%,
  and CDNOW was a one-category CD shop of 1997. Only alpha is changed: to 60 days (mean lambda one
  order per ~250 days), which gives a 78-week, 20k-customer history ~38% repeat buyers (~40% with
  k = 1) and ~2.0 orders per customer, while ~4.5% of customers buy in the 28 days after `end` and
  ~11% in the 91 days, enough positives to score a classifier. r, not alpha, sets how skewed
  buying is (a few heavy buyers), so keeping CDNOW's keeps its shape.
* k ~ gamma(t = 8, gamma = 4): mean 2 (a coefficient of variation of ~0.7 between orders), sd 0.7,
  so about 5% of customers buy clumpier than Poisson (k < 1).
* p_spend = 6.25, q = 3.74 are the CDNOW Gamma-Gamma estimates Fader, Hardie and Lee report;
  their v = 15.44 (USD) gives a mean order value of ~35 USD for 1997 CDs. v = 30.88 (twice theirs)
  scales every order by 2, to a mean order value of p_spend * v / (q - 1) ~ 70 in the chosen
  currency, typical of online fashion and home retail. Amounts are not converted between currencies.

Streams: each block of BLOCK_SIZE customers has its own population, timing and basket streams, so a
customer's history does not depend on `--customers` (nor their lambda, p, spend or first order on
`regularity`); order ids number all orders by time, so those do.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from lakecdp.cli_args import instant
from lakecdp.generate.catalog import build_catalog
from lakecdp.generate.settings import CATEGORIES, CURRENCY, random_stream
from lakecdp.importer.orders import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from lakecdp.progress import Progress

# The importer's columns, with `total` as the amount (it reads `total` or `revenue`).
ORDER_COLUMNS = (*REQUIRED_COLUMNS, *(name for name in OPTIONAL_COLUMNS if name != "revenue"))
FUTURE_WINDOWS_DAYS = (7, 28, 91)
TRUTH_COLUMNS = (
    "customer_id",
    "first_purchase_at",
    "purchase_rate_per_day",
    "dropout_probability",
    "dropped_at",
    "mean_spend",
    "regularity",
    "favourite_category",
    "orders_in_history",
    *(f"orders_after_end_{days}d" for days in FUTURE_WINDOWS_DAYS),
)
ORDERS_FILE, FUTURE_ORDERS_FILE, TRUTH_FILE = "orders.csv", "future_orders.csv", "truth.csv"

# Random streams of this generator (the behaviour generator's are 1-3), one per concern and block.
POPULATION_STREAM = 11
TIMING_STREAM = 12
BASKET_STREAM = 13
BLOCK_SIZE = 4096  # customers simulated together; a block is always drawn whole, then cut to --customers
SECONDS_PER_DAY = 86_400
WRITE_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class OrderHistorySettings:
    """What to generate; the process parameters' names are the papers' (see the module docstring)."""

    customers: int = 20_000
    weeks: int = 78
    seed: int = 7
    end: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    currency: str = CURRENCY
    regularity: float | None = None  # k for every customer; None draws k per customer
    acquisition_share: float = 1 / 3  # first purchases fall in this leading share of the window
    rate_r: float = 0.243  # lambda ~ gamma(shape r, rate alpha), per day
    rate_alpha_days: float = 60.0
    dropout_a: float = 0.793  # p ~ beta(a, b)
    dropout_b: float = 2.426
    regularity_t: float = 8.0  # k ~ gamma(shape t, rate gamma)
    regularity_gamma: float = 4.0
    spend_p: float = 6.25  # order value ~ gamma(shape p, rate nu), nu ~ gamma(shape q, rate v)
    spend_q: float = 3.74
    spend_v: float = 30.88
    favourite_share: float = 0.7  # orders in the customer's favourite category; others are uniform

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"OrderHistorySettings.customers must be >= 1, got {self.customers}")
        if self.weeks < 1:
            raise ValueError(f"OrderHistorySettings.weeks must be >= 1, got {self.weeks}")
        if self.seed < 0:
            raise ValueError(f"OrderHistorySettings.seed must be >= 0 (numpy SeedSequence), got {self.seed}")
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise ValueError("OrderHistorySettings.end must be timezone-aware, e.g. 2026-11-01T00:00:00Z")
        if not re.fullmatch(r"[A-Z]{3}", self.currency):  # the importer's currency check
            raise ValueError(f"OrderHistorySettings.currency must be an ISO 4217 code like USD, got {self.currency!r}")
        if self.regularity is not None and not self.regularity > 0:
            raise ValueError(f"OrderHistorySettings.regularity must be > 0 (1 = Poisson timing), got {self.regularity}")
        if not 0 < self.acquisition_share <= 1:
            raise ValueError(f"OrderHistorySettings.acquisition_share must be in (0, 1], got {self.acquisition_share}")
        if not 0 <= self.favourite_share <= 1:
            raise ValueError(f"OrderHistorySettings.favourite_share must be in [0, 1], got {self.favourite_share}")
        positive = (
            "rate_r",
            "rate_alpha_days",
            "dropout_a",
            "dropout_b",
            "regularity_t",
            "regularity_gamma",
            "spend_p",
            "spend_q",
            "spend_v",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"OrderHistorySettings.{name} must be > 0, got {getattr(self, name)}")

    @property
    def end_second(self) -> int:
        """`end` in whole seconds since the epoch; orders before it are history."""
        return int(self.end.timestamp() // 1)

    @property
    def start_second(self) -> int:
        return self.end_second - self.weeks * 7 * SECONDS_PER_DAY


@dataclass(frozen=True)
class OrderHistory:
    """Generated customers (index i is cust_{i+1}) and their orders in time order, before and after `end`."""

    settings: OrderHistorySettings
    first_second: np.ndarray  # per customer, int64 epoch seconds
    rate: np.ndarray  # lambda, orders per day
    dropout: np.ndarray  # p
    dropped_second: np.ndarray  # epoch seconds of the order they left after; -1 when alive at the horizon
    mean_spend: np.ndarray  # p_spend / nu
    regularity: np.ndarray  # k
    favourite: np.ndarray  # index into CATEGORIES
    order_customer: np.ndarray  # per order, customer index
    order_second: np.ndarray  # int64 epoch seconds, ascending
    order_total: np.ndarray  # rounded to cents, >= 0.01
    order_category: np.ndarray  # index into CATEGORIES
    order_product: np.ndarray  # index into the catalog's products

    @property
    def is_history(self) -> np.ndarray:
        """Per order: before `end` (orders.csv) rather than after it (future_orders.csv)."""
        return self.order_second < self.settings.end_second


@dataclass(frozen=True)
class Shelf:
    """One category's products: their positions in the catalog, and popularity summed up to each."""

    products: np.ndarray
    cumulative_popularity: np.ndarray


@dataclass(frozen=True)
class OrderHistorySummary:
    customers: int
    orders: int
    future_orders: int
    repeat_buyer_share: float  # customers with 2+ orders before `end`
    alive_share: float  # customers not dropped out by `end`
    mean_order_value: float


def generate_order_history(settings: OrderHistorySettings, *, progress: Progress | None = None) -> OrderHistory:
    """Simulates every customer from their first order to 91 days after `end`; no I/O.

    Args:
        progress: told the customers simulated so far.
    """
    progress = progress or Progress("order history", enabled=False)
    shelves = _shelves(settings.seed)
    customer_blocks, order_blocks = [], []
    for block in range((settings.customers + BLOCK_SIZE - 1) // BLOCK_SIZE):
        kept = min(BLOCK_SIZE, settings.customers - block * BLOCK_SIZE)
        customer_block, order_block = _simulate_block(settings, shelves, block, kept)
        customer_blocks.append(customer_block)
        order_blocks.append(order_block)
        progress.advance(kept)
    customers = {name: np.concatenate([b[name] for b in customer_blocks]) for name in customer_blocks[0]}
    orders = {name: np.concatenate([b[name] for b in order_blocks]) for name in order_blocks[0]}
    # By time; a customer's orders in one second keep their order, others' by customer.
    in_time_order = np.lexsort((orders["order_customer"], orders["order_second"]))
    return OrderHistory(settings=settings, **customers, **{name: values[in_time_order] for name, values in orders.items()})


def _simulate_block(
    settings: OrderHistorySettings, shelves: list[Shelf], block: int, kept: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The `OrderHistory` fields of one block's customers, and of their orders (customer indices global).

    The whole block is simulated and then cut to its first `kept` customers, so a customer's draws
    never depend on how many customers are generated.
    """
    population = random_stream(settings.seed, POPULATION_STREAM, block)
    window_days = settings.weeks * 7
    first_day = population.random(BLOCK_SIZE) * (settings.acquisition_share * window_days)
    rate = population.gamma(settings.rate_r, 1 / settings.rate_alpha_days, BLOCK_SIZE)
    dropout = population.beta(settings.dropout_a, settings.dropout_b, BLOCK_SIZE)
    # Drawn even when fixed, so --regularity changes no other customer parameter.
    drawn_regularity = population.gamma(settings.regularity_t, 1 / settings.regularity_gamma, BLOCK_SIZE)
    regularity = drawn_regularity if settings.regularity is None else np.full(BLOCK_SIZE, float(settings.regularity))
    spend_rate = population.gamma(settings.spend_q, 1 / settings.spend_v, BLOCK_SIZE)
    favourite = population.integers(0, len(CATEGORIES), BLOCK_SIZE)

    timing = random_stream(settings.seed, TIMING_STREAM, block)
    horizon_day = window_days + max(FUTURE_WINDOWS_DAYS)
    order_customer, order_day, dropped_day = _purchase_days(timing, first_day, rate, dropout, regularity, horizon_day)

    basket = random_stream(settings.seed, BASKET_STREAM, block)
    cents = np.rint(basket.gamma(settings.spend_p, 1 / spend_rate[order_customer]) * 100)
    order_category, order_product = _baskets(basket, favourite[order_customer], shelves, settings.favourite_share)

    is_kept = order_customer < kept
    offset = block * BLOCK_SIZE
    customers = {
        "first_second": _epoch_seconds(settings, first_day[:kept]),
        "rate": rate[:kept],
        "dropout": dropout[:kept],
        "dropped_second": np.where(np.isnan(dropped_day[:kept]), -1, _epoch_seconds(settings, np.nan_to_num(dropped_day[:kept]))),
        "mean_spend": settings.spend_p / spend_rate[:kept],
        "regularity": regularity[:kept],
        "favourite": favourite[:kept],
    }
    orders = {
        "order_customer": order_customer[is_kept] + offset,
        "order_second": _epoch_seconds(settings, order_day[is_kept]),
        "order_total": np.maximum(cents[is_kept], 1) / 100,
        "order_category": order_category[is_kept],
        "order_product": order_product[is_kept],
    }
    return customers, orders


def _purchase_days(
    rng: np.random.Generator,
    first_day: np.ndarray,
    rate: np.ndarray,
    dropout: np.ndarray,
    regularity: np.ndarray,
    horizon_day: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, day) of every order before `horizon_day`, and the day each customer dropped out (NaN: never).

    One round per order number: every customer still alive and inside the horizon draws their next
    gap, then their drop-out coin, so the work is one numpy call per round, not per order.
    """
    customers, days = [np.arange(first_day.size)], [first_day]
    dropped_day = np.full(first_day.size, np.nan)
    last_day = first_day.copy()
    active = np.arange(first_day.size)
    while active.size:
        shape = regularity[active]
        next_day = last_day[active] + rng.gamma(shape, 1 / (shape * rate[active]))
        is_inside = next_day < horizon_day
        active, next_day = active[is_inside], next_day[is_inside]
        last_day[active] = next_day
        customers.append(active)
        days.append(next_day)
        drops = rng.random(active.size) < dropout[active]
        dropped_day[active[drops]] = next_day[drops]
        active = active[~drops]
    return np.concatenate(customers), np.concatenate(days), dropped_day


def _shelves(seed: int) -> list[Shelf]:
    """Per category (in CATEGORIES order), its products' positions in the seed's catalog and their cumulative popularity."""
    catalog = build_catalog(seed)
    position = {product.product_id: index for index, product in enumerate(catalog.products)}
    return [
        Shelf(
            products=np.array([position[p.product_id] for p in catalog.by_category[name]]),
            cumulative_popularity=np.cumsum([p.popularity for p in catalog.by_category[name]]),
        )
        for name in CATEGORIES
    ]


def _baskets(
    rng: np.random.Generator, favourite: np.ndarray, shelves: list[Shelf], favourite_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per order: category (the favourite most of the time) and a catalog product of it, by popularity."""
    is_favourite = rng.random(favourite.size) < favourite_share
    category = np.where(is_favourite, favourite, rng.integers(0, len(CATEGORIES), favourite.size))
    draw = rng.random(favourite.size)
    product = np.empty(favourite.size, dtype=np.int64)
    for index, shelf in enumerate(shelves):
        in_category = category == index
        cumulative = shelf.cumulative_popularity
        picked = np.searchsorted(cumulative, draw[in_category] * cumulative[-1], side="right")
        product[in_category] = shelf.products[np.minimum(picked, shelf.products.size - 1)]
    return category, product


def _epoch_seconds(settings: OrderHistorySettings, days: np.ndarray) -> np.ndarray:
    """Days since the window's start -> whole epoch seconds (floored, so day < N days is second < N days)."""
    return settings.start_second + np.floor(days * SECONDS_PER_DAY).astype(np.int64)


def summarise(history: OrderHistory) -> OrderHistorySummary:
    """Counts and shares of a generated history (what the CLI prints)."""
    is_history = history.is_history
    orders_per_customer = np.bincount(history.order_customer[is_history], minlength=history.rate.size)
    is_alive = (history.dropped_second < 0) | (history.dropped_second >= history.settings.end_second)
    return OrderHistorySummary(
        customers=int(history.rate.size),
        orders=int(is_history.sum()),
        future_orders=int((~is_history).sum()),
        repeat_buyer_share=float(np.mean(orders_per_customer >= 2)),
        alive_share=float(np.mean(is_alive)),
        mean_order_value=float(history.order_total[is_history].mean()),
    )


# --- files ----------------------------------------------------------------------------------


def write_order_history(settings: OrderHistorySettings, out_dir: Path) -> OrderHistorySummary:
    """Generates the history for `settings` and writes orders.csv, future_orders.csv and truth.csv under `out_dir`."""
    out_dir = Path(out_dir)
    with Progress("order history: simulate", settings.customers, unit="customers") as progress:
        history = generate_order_history(settings, progress=progress)
    is_history = history.is_history
    with Progress("order history: write", history.order_second.size, unit="orders") as progress:
        for name, selected in ((ORDERS_FILE, is_history), (FUTURE_ORDERS_FILE, ~is_history)):
            with _atomic_text_file(out_dir / name) as handle:
                handle.write(",".join(ORDER_COLUMNS) + "\n")
                for chunk in _order_lines(history, np.flatnonzero(selected)):
                    handle.write(chunk)
                    progress.advance(chunk.count("\n"))
    with _atomic_text_file(out_dir / TRUTH_FILE) as handle:
        handle.write(",".join(TRUTH_COLUMNS) + "\n")
        handle.writelines(_truth_lines(history))
    return summarise(history)


def _order_lines(history: OrderHistory, rows: np.ndarray) -> Iterator[str]:
    """The CSV text of `rows` (order positions), WRITE_CHUNK_ROWS lines at a time.

    Order ids are `ord_00000001`... in time order over history and future, so importing the future
    file after the history adds new orders.
    """
    # No quoting needed: ids, ISO times, categories and the validated currency hold no comma or quote.
    product_ids = [product.product_id for product in build_catalog(history.settings.seed).products]
    currency = history.settings.currency
    for first in range(0, rows.size, WRITE_CHUNK_ROWS):
        chunk = rows[first : first + WRITE_CHUNK_ROWS]
        columns = zip(
            chunk.tolist(),
            history.order_customer[chunk].tolist(),
            _iso_utc(history.order_second[chunk]),
            history.order_total[chunk].tolist(),
            history.order_category[chunk].tolist(),
            history.order_product[chunk].tolist(),
        )
        yield "".join(
            f"ord_{row + 1:08d},{_customer_id(customer)},{ordered_at},{total:.2f},{currency},{CATEGORIES[category]},{product_ids[product]}\n"
            for row, customer, ordered_at, total, category, product in columns
        )


def _truth_lines(history: OrderHistory) -> Iterator[str]:
    end_second = history.settings.end_second
    customers = history.rate.size
    is_history = history.is_history
    orders_in_history = np.bincount(history.order_customer[is_history], minlength=customers)
    after_end = history.order_second - end_second
    future_counts = [
        np.bincount(history.order_customer[(after_end >= 0) & (after_end < days * SECONDS_PER_DAY)], minlength=customers)
        for days in FUTURE_WINDOWS_DAYS
    ]
    is_dropped_by_end = (history.dropped_second >= 0) & (history.dropped_second < end_second)
    dropped_at = np.where(is_dropped_by_end, _iso_utc(np.maximum(history.dropped_second, 0)), "")
    columns = zip(
        _iso_utc(history.first_second),
        history.rate.tolist(),
        history.dropout.tolist(),
        dropped_at.tolist(),
        history.mean_spend.tolist(),
        history.regularity.tolist(),
        history.favourite.tolist(),
        orders_in_history.tolist(),
        *(counts.tolist() for counts in future_counts),
    )
    for index, (first_at, rate, dropout, dropped, mean_spend, regularity, favourite, in_history, *after) in enumerate(columns):
        counts = ",".join(str(count) for count in after)
        yield (
            f"{_customer_id(index)},{first_at},{rate:.6g},{dropout:.6g},{dropped},{mean_spend:.2f},{regularity:.6g},"
            f"{CATEGORIES[favourite]},{in_history},{counts}\n"
        )


def _customer_id(index: int) -> str:
    """The behaviour generator's ids: cust_000001 for the first customer."""
    return f"cust_{index + 1:06d}"


def _iso_utc(seconds: np.ndarray) -> list[str]:
    """Epoch seconds -> '2026-11-01T00:00:00Z', the form the importer's Parquet path writes."""
    return np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s", timezone="UTC").tolist()


@contextmanager
def _atomic_text_file(path: Path) -> Iterator[TextIO]:
    """Write a hidden temp file then rename it, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.tmp")
    with open(temp_path, "w", encoding="utf-8", newline="") as handle:
        yield handle
    os.replace(temp_path, path)


# --- CLI ------------------------------------------------------------------------------------

DEFAULTS = OrderHistorySettings()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lakecdp.generate.order_history",
        description="Write a seeded order-only history with a planted BG/NBD-style purchase process (orders, future orders, truth).",
    )
    parser.add_argument("--customers", type=int, default=DEFAULTS.customers)
    parser.add_argument("--weeks", type=int, default=DEFAULTS.weeks, help="history length before --end; default %(default)s")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--end", type=instant, default=DEFAULTS.end, help="the history's 'now', ISO-8601; default %(default)s")
    parser.add_argument(
        "--regularity",
        type=float,
        help="timing shape k for every customer (1 = Poisson, pure BG/NBD); default: drawn per customer, mean "
        f"{DEFAULTS.regularity_t / DEFAULTS.regularity_gamma:g}",
    )
    parser.add_argument("--currency", default=DEFAULTS.currency, help="ISO 4217 code of the totals; default %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = OrderHistorySettings(
            customers=args.customers,
            weeks=args.weeks,
            seed=args.seed,
            end=args.end,
            regularity=args.regularity,
            currency=args.currency,
        )
    except ValueError as error:
        raise SystemExit(f"lakecdp.generate.order_history: {error}") from error
    summary = write_order_history(settings, args.out)
    print(
        f"wrote {summary.orders} orders of {summary.customers} customers ({settings.weeks} weeks to {settings.end.isoformat()}, "
        f"seed {settings.seed}) and {summary.future_orders} orders of the {max(FUTURE_WINDOWS_DAYS)} days after it under {args.out}: "
        f"{summary.repeat_buyer_share:.1%} repeat buyers, {summary.alive_share:.1%} alive at the end, "
        f"mean order value {summary.mean_order_value:.2f} {settings.currency}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
