"""SQL segments and `customer:` rules: what the parser refuses, and the two executors of a SQL tree agreeing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from pyspark.sql import functions as F

from lakecdp.config.models import CustomerSettings
from lakecdp.segments import RuleError, parse_segments
from lakecdp.segments.rules import SQL_PROFILE_COLUMNS, customer_columns
from lakecdp.segments.sql import SqlError, column, evaluate, parse_sql

CUSTOMERS = CustomerSettings.model_validate(
    {
        "attributes": {
            "loyalty_tier": {"values": ["none", "gold", "platinum"]},
            "age": {"type": "int", "min": 16, "max": 120},
            "phone": {"pii": True},
        }
    }
)
CRM_COLUMNS = CUSTOMERS.rule_columns


def _sql(text: str):
    return parse_sql(text, SQL_PROFILE_COLUMNS, CRM_COLUMNS)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("orders >= 2 AND shoe_size > 40", "unknown column 'shoe_size' at position 17"),
        ("customer.phone = '123'", "unknown customer attribute 'phone'"),
        ("customer.email LIKE '%@x.com'", "unknown customer attribute 'email'"),
        ("exp(orders) > 2", "function exp() is not allowed (no UDFs)"),
        ("orders IN (SELECT orders FROM profile_features)", "SELECT is not allowed"),
        ("orders > 1; DROP TABLE customers", "unexpected character ';'"),
        ("DROP TABLE customers", "DROP is not allowed"),
        ("EXISTS (orders)", "EXISTS is not allowed"),
        ("orders + 2", "gives a number, not true/false"),
        ("orders = 'two'", "compares a number with a string"),
        ("customer.loyalty_tier > 3", "compares a string with a number"),
        ("orders > 1 AND monetary", "AND needs a boolean, got a number"),
        ("last_order_at > 'yesterday'", "'yesterday' is not an ISO-8601 timestamp"),
        ("orders IN (1, monetary)", "IN takes a list of literal values"),
        ("orders >= ", "the expression ends too early at the end"),
        ("(orders >= 2", "expected ')' at the end"),
        ("profile_features.orders > 1", "only customer.<attribute> names a column of another table"),
    ],
)
def test_sql_that_is_refused_says_why_and_where(text, says):
    with pytest.raises(SqlError) as caught:
        _sql(text)
    assert says in str(caught.value)


def test_sql_records_the_columns_it_reads():
    rule = _sql("customer.loyalty_tier = 'gold' AND intent_probability >= 0.5 OR lower(customer.city) LIKE 'new%'")
    assert rule.profile_columns == ("intent_probability",)
    assert dict(rule.customer_columns) == {"loyalty_tier": "string", "city": "string"}


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"customer": "phone", "op": "==", "value": "1"}, "declared pii: true in conf/base/customers.yaml"),
        ({"customer": "shoe_size", "op": ">", "value": 40}, "unknown customer attribute 'shoe_size'"),
        ({"customer": "loyalty_tier", "op": "in", "value": ["gold", "diamond"]}, "loyalty_tier never takes 'diamond'"),
        ({"customer": "email", "op": "==", "value": "a@b.c"}, "unknown customer attribute 'email'"),
        ({"sql": "orders >= 2 AND nope = 1"}, "segment 's': rule.sql: unknown column 'nope'"),
        ({"sql": ""}, "rule.sql: must be a SQL boolean expression in quotes"),
    ],
)
def test_customer_and_sql_rules_are_checked_when_segments_load(rule, says):
    with pytest.raises(RuleError) as caught:
        parse_segments([{"name": "s", "rule": rule}], customers=CUSTOMERS)
    assert says in str(caught.value)


def test_a_segment_has_a_rule_or_sql_not_both():
    with pytest.raises(RuleError, match="has both 'rule:' and 'sql:'"):
        parse_segments([{"name": "s", "rule": {"event": "Order Completed"}, "sql": "orders > 1"}], customers=CUSTOMERS)
    (segment,) = parse_segments([{"name": "s", "sql": "customer.age BETWEEN 18 AND 30"}], customers=CUSTOMERS)
    assert customer_columns([segment]) == {"age": "int"}
    with pytest.raises(RuleError, match="unknown customer attribute 'age'"):
        parse_segments([{"name": "s", "sql": "customer.age > 1"}])  # no declaration: nothing to read


def test_shipped_segments_parse_with_shipped_attributes():
    from lakecdp.config import load_settings
    from lakecdp.segments import segments_of

    names = {s.name for s in segments_of(load_settings())}
    assert {"nyc_high_value_browsers", "nyc_high_value_browsers_sql", "gold_members_cooling"} <= names


EXPRESSIONS = [
    "orders >= 1 AND customer.loyalty_tier IN ('gold', 'platinum')",
    "customer.loyalty_tier NOT IN ('gold')",
    "coalesce(avg_order_value, 0) > 25 OR customer.city LIKE 'New %'",
    "customer.city NOT LIKE '%o_k'",
    "NOT (product_views_7d BETWEEN 1 AND 3) AND customer.age IS NOT NULL",
    "monetary / orders > 30",
    "greatest(product_views_24h, cart_adds_24h * 2) >= 2 OR customer.age < 30",
    "least(recency_days, 3.5) <= 2",
    "last_order_at >= '2026-11-08T00:00:00Z' OR upper(top_device_type) = 'MOBILE'",
    "customer.signup_date < DATE '2026-01-01' AND length(customer.city) > 3",
    "-recency_days > -5 OR country <> 'DE'",
    "NOT (customer.loyalty_tier = 'gold' OR open_cart_value > 20)",
    "abs(monetary - 100) < 50 AND has_open_cart = true",
    "customer.marketing_opt_in OR orders = 0",
]


def _rows():
    maybe = lambda strategy: st.one_of(st.none(), strategy)  # noqa: E731 - one-line strategy helper
    return st.fixed_dictionaries(
        {
            "orders": maybe(st.integers(0, 4)),
            "avg_order_value": maybe(st.sampled_from([10.0, 25.0, 40.5])),
            "product_views_7d": maybe(st.integers(0, 5)),
            "monetary": maybe(st.sampled_from([0.0, 60.0, 100.0, 149.99, 300.0])),
            "product_views_24h": maybe(st.integers(0, 3)),
            "cart_adds_24h": maybe(st.integers(0, 2)),
            "recency_days": maybe(st.sampled_from([0.5, 2.0, 3.5, 9.25])),
            "last_order_at": maybe(st.sampled_from([datetime(2026, 11, 7, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC)])),
            "top_device_type": maybe(st.sampled_from(["mobile", "Desktop"])),
            "country": maybe(st.sampled_from(["DE", "US"])),
            "open_cart_value": maybe(st.sampled_from([0.0, 20.0, 35.0])),
            "has_open_cart": maybe(st.booleans()),
            "loyalty_tier": maybe(st.sampled_from(["none", "gold", "platinum"])),
            "city": maybe(st.sampled_from(["New York", "new york", "Newark", "York", "New_ork"])),
            "age": maybe(st.integers(16, 90)),
            "signup_date": maybe(st.sampled_from([date(2025, 12, 31), date(2026, 1, 1)])),
            "marketing_opt_in": maybe(st.booleans()),
        }
    )


_PROFILE_SCHEMA = (
    "orders bigint, avg_order_value double, product_views_7d bigint, monetary double, product_views_24h bigint, "
    "cart_adds_24h bigint, recency_days double, last_order_at timestamp, top_device_type string, country string, "
    "open_cart_value double, has_open_cart boolean"
)
_CRM_SCHEMA = "loyalty_tier string, age int, city string, signup_date date, marketing_opt_in boolean"


# No shrinking: each example runs a Spark job.
@settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(_rows(), min_size=1, max_size=12))
def test_spark_and_python_executors_agree(spark, rows):
    trees = [_sql(text) for text in EXPRESSIONS]
    crm = [c.split()[0] for c in _CRM_SCHEMA.split(", ")]
    frame = spark.createDataFrame(
        [(*[r[c.split()[0]] for c in _PROFILE_SCHEMA.split(", ")], tuple(r[c] for c in crm)) for r in rows],
        f"{_PROFILE_SCHEMA}, customer struct<{_CRM_SCHEMA.replace(' ', ': ').replace(',:', ',')}>",
    )
    spark_says = frame.select(*[F.coalesce(column(t.tree), F.lit(False)).alias(f"e{i}") for i, t in enumerate(trees)]).collect()
    for row, verdicts in zip(rows, spark_says):
        customer = {c: row[c] for c in crm}
        for i, tree in enumerate(trees):
            assert (evaluate(tree.tree, row, customer) is True) == verdicts[f"e{i}"], (EXPRESSIONS[i], row)
