"""The profile view: one row per profiled customer with what rules, SQL segments and analysts read."""

from __future__ import annotations

from pyspark.sql import DataFrame, functions as F

# The per-customer struct of CRM columns a `customer:` rule reads (`customer.loyalty_tier`).
CUSTOMER = "customer"


def customer_struct(customers: DataFrame, columns: dict[str, str]) -> DataFrame:
    """`customers` -> (customer_id, customer: struct of `columns`), a column the table lacks yet read as null."""
    fields = [(F.col(name) if name in customers.columns else F.lit(None)).cast(dtype).alias(name) for name, dtype in columns.items()]
    return customers.select("customer_id", F.struct(*fields).alias(CUSTOMER))


def profile_view(profiles: DataFrame, scores: DataFrame, customers: DataFrame, columns: dict[str, str]) -> DataFrame:
    """The analyst-facing row per profiled customer: profile features, model scores, and `customer`,
    the struct of CRM columns that are not personal data (`columns`: CustomerSettings.rule_columns).
    Its names are the ones SQL segments use (`orders`, `intent_probability`, `customer.loyalty_tier`)."""
    scored = scores.drop("scored_at")
    return profiles.join(scored, on="customer_id", how="left").join(customer_struct(customers, columns), on="customer_id", how="left")
