"""Contact PII from identify calls lives in `customers` only, never in bronze.

Identify traits such as email and names are split off at ingest: `customers` gets the contact
fields (the newest identify wins over an older row, field by field), and bronze `traits_json`
keeps only the other traits. `context.traits` (where some SDKs repeat them) and `context.ip`
are dropped from `context_json` too.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, functions as F
from pyspark.sql.types import MapType, StringType

from lakecdp.lake import AppTxn, Lake
from lakecdp.privacy.pseudonyms import PATTERN, Pseudonymizer

# Segment's reserved identify traits that identify or reach a person
# (https://segment.com/docs/connections/spec/identify/#traits), in both spellings.
CONTACT_TRAITS = (
    "email", "name", "first_name", "firstname", "last_name", "lastname", "phone", "address",
    "birthday", "username", "avatar",
)
CONTEXT_PII = ("traits", "ip")
CONTACT_COLUMNS = ("email", "first_name", "last_name")


def without_keys(json_text: Column, keys: tuple[str, ...]) -> Column:
    """A JSON object's text without the given top-level keys (compared case-insensitively).

    Values come back as JSON strings of their text (a nested object stays readable with a
    second get_json_object); a value that is not an object passes through unchanged.
    """
    as_map = F.from_json(json_text, MapType(StringType(), StringType()))
    kept = F.to_json(F.map_filter(as_map, lambda key, _: ~F.lower(key).isin(*keys)))
    return F.when(as_map.isNull(), json_text).otherwise(kept)


def contacts_from_identifies(valid: DataFrame, pseudonyms: Pseudonymizer) -> DataFrame:
    """Per identified user in a parsed batch: the pseudonym (`customer_id`) and the retailer's id
    (`external_id`), each contact field's newest non-null value and its time (`email_at`, ...), and
    the newest identify (`at`); users whose identifies carried none are left out."""
    e = F.col("e")

    def trait(*names: str) -> Column:
        return F.coalesce(*[F.get_json_object("raw", f"$.traits.{name}") for name in names])

    rows = valid.filter((e.type == "identify") & e.userId.isNotNull()).select(
        pseudonyms.column(e.userId).alias("customer_id"),
        e.userId.alias("external_id"),
        F.lower(F.trim(trait("email"))).alias("email"),
        trait("first_name", "firstName").alias("first_name"),
        trait("last_name", "lastName").alias("last_name"),
        F.col("event_ts").alias("at"),
    )
    return (
        rows.filter(F.coalesce(*[F.col(c) for c in CONTACT_COLUMNS]).isNotNull())
        .groupBy("customer_id")
        .agg(
            # An id that came in already pseudonymous is not the retailer's: not an external id.
            F.max(F.when(~F.col("external_id").rlike(PATTERN.pattern), F.col("external_id"))).alias("external_id"),
            *[F.max_by(c, F.when(F.col(c).isNotNull(), F.col("at"))).alias(c) for c in CONTACT_COLUMNS],
            *[F.max(F.when(F.col(c).isNotNull(), F.col("at"))).alias(f"{c}_at") for c in CONTACT_COLUMNS],
            F.max("at").alias("at"),
        )
    )


def upsert_contacts(lake: Lake, contacts: DataFrame, *, txn: AppTxn | None = None) -> None:
    """Merge a batch's identify contacts into `customers` (see `fold_contacts`)."""
    existing = lake.read("customers").join(contacts.select("customer_id"), on="customer_id", how="left_semi")
    lake.merge("customers", fold_contacts(contacts, existing), txn=txn)


def fold_contacts(contacts: DataFrame, existing: DataFrame) -> DataFrame:
    """`customers` rows for the contacts: a field sent after the row's last update replaces it,
    field by field; CRM columns (opt-in, signup date, source) are kept; a new customer gets
    source 'identify'."""
    n, o = contacts.alias("n"), existing.alias("o")

    def pick(column: str) -> Column:
        """The identify's value when it is newer than the stored row, else the stored one (if any)."""
        new, old = F.col(f"n.{column}"), F.col(f"o.{column}")
        is_newer = F.col("o.updated_at").isNull() | (F.col(f"n.{column}_at") >= F.col("o.updated_at"))
        return F.when(new.isNotNull() & is_newer, new).otherwise(F.coalesce(old, new)).alias(column)

    return n.join(o, on="customer_id", how="left").select(
        "customer_id", F.coalesce("o.external_id", "n.external_id").alias("external_id"), *[pick(c) for c in CONTACT_COLUMNS],
        F.col("o.country"), F.col("o.city"), F.col("o.signup_date"), F.col("o.marketing_opt_in"),
        F.coalesce(F.col("o.source"), F.lit("identify")).alias("source"),
        F.greatest(F.col("o.updated_at"), F.col("n.at")).alias("updated_at"),
    )
