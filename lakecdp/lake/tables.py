"""Every lakecdp table, declared once: name, schema, partitioning, keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspark.sql import types as T

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: T.StructType
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    description: str = ""
    # Extensible: columns beyond the declared ones (declared in conf, e.g. customers.attributes) are
    # kept by reads and writes; a write that lacks one leaves it as it was.
    extensible: bool = False
    # Contact data (emails, names, raw lines): read as null by a caller without scope pii:read.
    contact_columns: tuple[str, ...] = ()
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(f.name for f in self.schema.fields)
        object.__setattr__(self, "columns", names)
        for name in (self.name, *names):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"table {self.name}: {name!r} is not a lower_snake_case identifier")
        missing = [c for c in (*self.keys, *self.partition_by, *self.contact_columns) if c not in names]
        if missing:
            raise ValueError(f"table {self.name}: keys/partition/contact columns {missing} are not in the schema")


def _fields(*specs: tuple[str, T.DataType, bool]) -> T.StructType:
    return T.StructType([T.StructField(name, dtype, nullable) for name, dtype, nullable in specs])


S, TS, D, L, DBL, I, B = T.StringType(), T.TimestampType(), T.DateType(), T.LongType(), T.DoubleType(), T.IntegerType(), T.BooleanType()  # noqa: E741 - one-letter type shorthands keep each schema on a line

EVENTS = TableSpec(
    name="events",
    description="Bronze: every valid event exactly once, Segment spec flattened; event time in `timestamp`.",
    keys=("message_id",),
    partition_by=("event_date",),
    schema=_fields(
        ("message_id", S, False),
        ("type", S, False),
        ("event", S, True),
        ("customer_id", S, False),
        ("user_id", S, True),
        ("anonymous_id", S, True),
        ("previous_id", S, True),
        ("timestamp", TS, False),
        ("received_at", TS, False),
        ("sent_at", TS, True),
        ("page_name", S, True),
        ("url", S, True),
        ("category", S, True),
        ("product_id", S, True),
        ("price", DBL, True),
        ("quantity", I, True),
        ("cart_id", S, True),
        ("order_id", S, True),
        ("revenue", DBL, True),
        ("search_query", S, True),
        ("campaign_id", S, True),
        ("time_on_page_s", DBL, True),
        ("scroll_depth_pct", I, True),
        ("points", I, True),  # properties.points of loyalty events (README "Signals")
        ("satisfaction_score", I, True),  # properties.satisfaction_score of a resolved support ticket
        ("device_type", S, True),
        ("country", S, True),
        ("city", S, True),
        ("timezone", S, True),
        ("properties_json", S, True),
        ("traits_json", S, True),
        ("context_json", S, True),
        ("source_file", S, True),
        ("event_date", D, False),
    ),
)

QUARANTINE = TableSpec(
    name="quarantine",
    description="Events that failed validation, raw, with the reason; nothing is dropped silently.",
    keys=("quarantine_id",),
    partition_by=("quarantine_date",),
    contact_columns=("raw",),  # the line as sent, before contact redaction
    schema=_fields(
        ("quarantine_id", S, False),
        ("message_id", S, True),
        ("reason", S, False),
        ("raw", S, True),
        ("source_file", S, True),
        ("quarantined_at", TS, False),
        ("quarantine_date", D, False),
    ),
)

COUNTS_BY_CATEGORY = T.MapType(T.StringType(), T.LongType())

PROFILE_FEATURES = TableSpec(
    name="profile_features",
    description="One row per customer: windowed activity, RFM, cart state, engagement, context. "
    "Windows count back from `as_of` by event time.",
    keys=("customer_id",),
    schema=_fields(
        ("customer_id", S, False),
        ("first_seen_at", TS, True),
        ("last_activity_at", TS, True),
        ("events_total", L, False),
        ("page_views", L, False),
        ("page_views_24h", L, False),
        ("product_views", L, False),
        ("product_views_1h", L, False),
        ("product_views_24h", L, False),
        ("product_views_7d", L, False),
        ("category_views_1h", COUNTS_BY_CATEGORY, True),
        ("category_views_24h", COUNTS_BY_CATEGORY, True),
        ("category_views_7d", COUNTS_BY_CATEGORY, True),
        ("category_views_30d", COUNTS_BY_CATEGORY, True),
        ("distinct_categories_30d", L, False),
        ("avg_time_on_page_s", DBL, True),
        ("avg_scroll_depth_pct", DBL, True),
        ("searches", L, False),
        ("searches_7d", L, False),
        ("cart_adds", L, False),
        ("cart_adds_24h", L, False),
        ("cart_add_categories_24h", L, False),
        ("checkouts_started", L, False),
        ("checkouts_without_order", L, False),
        ("orders", L, False),
        ("orders_30d", L, False),
        ("orders_7d", L, True),  # nullable: declared later, so lakes written before read it as null
        ("email_sends_7d", L, False),
        ("email_sends_30d", L, False),
        ("email_opens", L, False),
        ("email_opens_7d", L, False),
        ("email_opens_30d", L, False),
        ("email_clicks", L, False),
        ("email_clicks_7d", L, False),
        ("email_clicks_30d", L, False),
        # Declared later than the rest, so nullable: lakes written before read them as null.
        ("email_open_rate_30d", DBL, True),  # opens / sends in 30 d; null without a send
        ("email_click_rate_30d", DBL, True),  # clicks / sends in 30 d
        ("email_conversion_rate_30d", DBL, True),  # orders / email clicks in 30 d (not attributed); null without a click
        ("wishlist_adds", L, True),
        ("wishlist_adds_30d", L, True),
        ("wishlist_removes", L, True),
        ("wishlist_to_cart", L, True),
        ("wishlist_items", L, True),
        ("loyalty_earnings_30d", L, True),
        ("loyalty_redemptions_30d", L, True),
        ("loyalty_tier_changes_30d", L, True),
        ("support_tickets_opened", L, True),
        ("support_tickets_opened_30d", L, True),
        ("support_tickets_resolved", L, True),
        ("open_support_tickets", L, True),
        ("loyalty_points_earned", L, True),  # lifetime sums of properties.points
        ("loyalty_points_redeemed", L, True),
        ("loyalty_points_balance", L, True),  # earned - redeemed, as the events tell
        ("avg_satisfaction_score", DBL, True),  # over resolved tickets that carried a score
        ("recency_days", DBL, True),
        ("frequency", L, False),
        ("monetary", DBL, False),
        ("avg_order_value", DBL, True),
        ("last_order_at", TS, True),
        ("last_cart_add_at", TS, True),
        ("has_open_cart", B, False),
        ("open_cart_value", DBL, False),
        ("last_category_viewed", S, True),
        ("top_device_type", S, True),
        ("device_mix", T.MapType(T.StringType(), T.DoubleType()), True),
        ("preferred_local_hour", I, True),
        ("country", S, True),
        ("city", S, True),
        ("timezone", S, True),
        ("as_of", TS, False),
    ),
)

SEGMENT_MEMBERSHIP = TableSpec(
    name="segment_membership",
    description="Current members of every segment (a row per segment x customer).",
    keys=("segment", "customer_id"),
    schema=_fields(
        ("segment", S, False),
        ("customer_id", S, False),
        ("entered_at", TS, False),
        ("rule_version", S, False),
        ("reason", S, True),
        ("evaluated_at", TS, False),
    ),
)

SEGMENT_TRANSITIONS = TableSpec(
    name="segment_transitions",
    description="History: who entered or exited which segment, when, under which rule version, and why.",
    keys=("segment", "customer_id", "at", "transition"),
    schema=_fields(
        ("segment", S, False),
        ("customer_id", S, False),
        ("transition", S, False),
        ("at", TS, False),
        ("rule_version", S, False),
        ("reason", S, True),
    ),
)

SEGMENT_TIMERS = TableSpec(
    name="segment_timers",
    description="When time alone can next change a customer's membership (absence deadlines, windows sliding).",
    keys=("segment", "customer_id"),
    schema=_fields(
        ("segment", S, False),
        ("customer_id", S, False),
        ("due_at", TS, False),
        ("rule_version", S, False),
    ),
)

TRIGGER_OUTBOX = TableSpec(
    name="trigger_outbox",
    description="Durable outbox of trigger sends: pending until re-checked and sent, else cancelled or failed with a reason.",
    keys=("trigger_id",),
    schema=_fields(
        ("trigger_id", S, False),
        ("segment", S, False),
        ("customer_id", S, False),
        ("destination", S, False),
        ("entered_at", TS, False),
        ("due_at", TS, False),
        ("state", S, False),
        ("attempts", I, False),
        ("reason", S, True),
        ("updated_at", TS, False),
    ),
)

ERASURE_REQUESTS = TableSpec(
    name="erasure_requests",
    description="Queued right-to-erasure requests; a row leaves the queue when the erasure is done.",
    keys=("request_id",),
    schema=_fields(("request_id", S, False), ("customer_id", S, False), ("requested_at", TS, False)),
)

ERASURE_LOG = TableSpec(
    name="erasure_log",
    description="Proof of completed erasures: what was deleted and when, holding no identifier of the customer.",
    keys=("request_id",),
    schema=_fields(
        ("request_id", S, False),
        ("requested_at", TS, False),
        ("completed_at", TS, False),
        ("rows_deleted_json", S, False),
        ("landing_lines_deleted", L, False),
        ("esp_outcomes_json", S, True),  # {destination: "deleted" | "not found" | ...}; null when no ESP was asked
    ),
)

CONSENT_LEDGER = TableSpec(
    name="consent_ledger",
    description="Every consent fact per customer x purpose x channel (granted/withdrawn), with its source and proof; "
    "insert-only, the latest recorded_at wins.",
    keys=("entry_id",),
    schema=_fields(
        ("entry_id", S, False),
        ("customer_id", S, False),
        ("purpose", S, False),
        ("channel", S, False),
        ("status", S, False),
        ("recorded_at", TS, False),
        ("source", S, False),
        ("proof", S, False),
        ("ingested_at", TS, False),
    ),
)

PII_ACCESS_LOG = TableSpec(
    name="pii_access_log",
    description="Who read contact PII through lakecdp, in which role, what and when (customer ids only, never the PII itself).",
    keys=("access_id",),
    schema=_fields(
        ("access_id", S, False),
        ("actor", S, False),
        ("action", S, False),
        ("customer_id", S, True),
        ("tables", S, False),
        ("rows", L, False),
        ("accessed_at", TS, False),
        ("role", S, True),  # lakecdp.privacy.roles: a role, `local` (no tokens configured); null in records from before roles
    ),
)

CUSTOMERS = TableSpec(
    name="customers",
    description="CRM attributes per customer (imported or from identify traits); holds contact PII and the "
    "retailer's own id (`external_id`; every other table knows the customer by its pseudonym only). "
    "Columns after `updated_at` are the attributes conf/base/customers.yaml declares.",
    keys=("customer_id",),
    extensible=True,
    # external_id too: it turns every pseudonym back into the retailer's id.
    contact_columns=("external_id", "email", "first_name", "last_name"),
    schema=_fields(
        ("customer_id", S, False),
        ("external_id", S, True),
        ("email", S, True),
        ("first_name", S, True),
        ("last_name", S, True),
        ("country", S, True),
        ("city", S, True),
        ("signup_date", D, True),
        ("marketing_opt_in", B, True),
        ("source", S, False),
        ("updated_at", TS, False),
    ),
)

CUSTOMER_ENRICHMENT = TableSpec(
    name="customer_enrichment",
    description="Third-party attributes per customer, one row per source and attribute, with provenance: when the "
    "source fetched it, the legal basis and the consent status that let it in (lakecdp enrich import).",
    keys=("customer_id", "source", "attribute"),
    schema=_fields(
        ("customer_id", S, False),
        ("source", S, False),
        ("attribute", S, False),
        ("value", S, True),  # as text; value_type says how to read it
        ("value_type", S, False),
        ("fetched_at", TS, False),
        ("legal_basis", S, False),
        ("consent_status", S, False),  # granted (a recorded grant) | not_withdrawn (legitimate interest)
        ("imported_at", TS, False),
    ),
)

IDENTITY_LINKS = TableSpec(
    name="identity_links",
    description="Identity graph: which anonymous/device ids belong to which customer, and the merge log.",
    keys=("anonymous_id", "customer_id"),
    schema=_fields(
        ("anonymous_id", S, False),
        ("customer_id", S, False),
        ("linked_at", TS, False),
        ("source_message_id", S, True),
        ("is_active", B, False),
        ("unmerged_at", TS, True),
    ),
)

PROFILE_SCORES = TableSpec(
    name="profile_scores",
    description="Model outputs per customer: purchase-intent probability and decile, behaviour cluster, and from "
    "BG/NBD + Gamma-Gamma P(alive), orders expected in the label window and the next 12 months' value (in clv_currency).",
    keys=("customer_id",),
    schema=_fields(
        ("customer_id", S, False),
        ("intent_probability", DBL, True),
        ("intent_decile", I, True),
        ("cluster_id", I, True),
        ("p_alive", DBL, True),
        ("expected_orders", DBL, True),
        ("clv_12m", DBL, True),
        ("clv_currency", S, True),
        ("cluster_label", S, True),
        ("intent_model_version", S, True),
        ("cluster_model_version", S, True),
        ("scored_at", TS, False),
    ),
)

EXPORT_LOG = TableSpec(
    name="export_log",
    description="ESP exports, append-only: a `pending` row per member of every planned batch, written before "
    "sending, then one `sent` or `failed` row (with the ESP's reason) once the batch is done. No plain emails.",
    keys=("batch_id", "customer_id", "state"),
    schema=_fields(
        ("run_id", S, False),
        ("destination", S, False),
        ("segment", S, False),
        ("batch_id", S, False),
        ("batch_seq", I, False),
        ("batch_kind", S, False),
        ("idempotency_key", S, False),
        ("customer_id", S, False),
        ("action", S, False),
        ("identifier", S, False),
        ("payload_hash", S, True),
        ("state", S, False),
        ("reason", S, True),
        ("is_retryable", B, True),
        ("attempts", I, True),
        ("planned_at", TS, False),
        ("recorded_at", TS, False),
    ),
)

EXPORT_SUPPRESSIONS = TableSpec(
    name="export_suppressions",
    description="Addresses no export may reach (hard bounces, complaints), by normalized email SHA-256.",
    keys=("email_sha256",),
    schema=_fields(
        ("email_sha256", S, False),
        ("customer_id", S, True),
        ("reason", S, False),
        ("source", S, False),
        ("suppressed_at", TS, False),
    ),
)

RECOMMENDATIONS = TableSpec(
    name="recommendations",
    description="Nightly product recommendations per customer (rank 1 = best), source one of rule, cf (item-to-item "
    "co-occurrence), content (catalog-attribute similarity; cf and content are blended, the larger share names the row), "
    "category (fallback) or popular, with the catalog fields content needs. Bought and out-of-stock items excluded.",
    keys=("customer_id", "rank"),
    schema=_fields(
        ("customer_id", S, False),
        ("rank", I, False),
        ("product_id", S, False),
        ("product_name", S, True),
        ("category", S, True),
        ("price", DBL, True),
        ("score", DBL, False),
        ("source", S, False),
        ("generated_at", TS, False),
    ),
)

EXPERIMENT_ASSIGNMENTS = TableSpec(
    name="experiment_assignments",
    description="Materialized experiment variants (deterministic hash of experiment and customer), "
    "so exports, triggers and analysis read the variant each customer had.",
    keys=("experiment", "customer_id"),
    schema=_fields(
        ("experiment", S, False),
        ("customer_id", S, False),
        ("variant", S, False),
        ("assigned_at", TS, False),
    ),
)

GLOBAL_HOLDOUT = TableSpec(
    name="global_holdout",
    description="Persistent stratified global holdout draws, one per epoch (re-draw schedule in conf/base/experiments.yaml).",
    keys=("epoch", "customer_id"),
    schema=_fields(
        ("epoch", S, False),
        ("customer_id", S, False),
        ("stratum", S, False),
        ("is_holdout", B, False),
        ("drawn_at", TS, False),
    ),
)

CUSTOMER_KEYS = TableSpec(
    name="customer_keys",
    description="Each customer's data key for the contact columns of `customers`, wrapped (AES-GCM) by the master "
    "key, which is never in the lake (lakecdp.lake.crypto). Erasure deletes the key: older versions and backups of "
    "`customers` then hold ciphertext nobody can read.",
    keys=("customer_id",),
    schema=_fields(
        ("customer_id", S, False),
        ("wrapped_key", S, False),  # base64(nonce || AES-GCM(master key, data key))
        ("created_at", TS, False),
    ),
)

LAKE_KEYS = TableSpec(
    name="lake_keys",
    description="Fingerprints of the keys the lake was built with (lakecdp.privacy.pseudonyms); never a key.",
    keys=("purpose",),
    schema=_fields(
        ("purpose", S, False),
        ("fingerprint", S, False),
        ("recorded_at", TS, False),
    ),
)

STREAM_METRICS = TableSpec(
    name="stream_metrics",
    description="One row per micro-batch of the events stream: counts, duration, lag and step timings (no customer data). "
    "Written with each flush of the online state and when the stream stops; `lakecdp status` and `lakecdp report` read it.",
    keys=("stream", "batch_id"),
    schema=_fields(
        ("stream", S, False),  # the checkpoint's query: batch ids restart with a new checkpoint
        ("batch_id", L, False),
        ("path", S, False),  # live (decided in Python), spark (a big batch), batch (state.mode batch)
        ("started_at", TS, False),  # wall-clock instants: operational time, not the pipeline's clock
        ("ended_at", TS, False),
        ("duration_s", DBL, False),
        ("lag_s", DBL, True),  # ended_at minus the oldest receivedAt among the batch's valid events
        ("lines", L, False),
        ("events", L, False),
        ("quarantined", L, False),
        ("duplicates", L, False),
        ("customers", L, False),
        ("input_rows_per_s", DBL, True),  # Spark's StreamingQueryProgress for the batch, when it arrived
        ("processed_rows_per_s", DBL, True),
        ("steps", S, False),  # JSON object: step -> seconds
    ),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        EVENTS,
        QUARANTINE,
        CUSTOMERS,
        CUSTOMER_KEYS,
        CUSTOMER_ENRICHMENT,
        CONSENT_LEDGER,
        PII_ACCESS_LOG,
        IDENTITY_LINKS,
        PROFILE_FEATURES,
        PROFILE_SCORES,
        SEGMENT_MEMBERSHIP,
        SEGMENT_TRANSITIONS,
        SEGMENT_TIMERS,
        TRIGGER_OUTBOX,
        ERASURE_REQUESTS,
        ERASURE_LOG,
        EXPORT_LOG,
        EXPORT_SUPPRESSIONS,
        RECOMMENDATIONS,
        EXPERIMENT_ASSIGNMENTS,
        GLOBAL_HOLDOUT,
        LAKE_KEYS,
        STREAM_METRICS,
    )
}


def table(name: str) -> TableSpec:
    """The declared table called `name`."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; declared tables: {', '.join(sorted(TABLES))}") from None
