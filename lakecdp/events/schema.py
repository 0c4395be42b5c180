"""The wire format lakecdp accepts: Segment's spec (https://segment.com/docs/connections/spec/common/)."""

from __future__ import annotations

from pyspark.sql import types as T

EVENT_TYPES = ("track", "identify", "page", "screen", "alias", "group")

# Segment's documented limit for one call (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#max-request-size)
MAX_EVENT_BYTES = 32 * 1024

# Numeric properties arrive as text so a wrong type becomes a quarantine reason, not a silent null.
_PROPERTIES = T.StructType(
    [
        T.StructField(name, T.StringType())
        for name in (
            "url",
            "path",
            "category",
            "product_id",
            "price",
            "quantity",
            "cart_id",
            "order_id",
            "revenue",
            "total",
            "value",
            "query",
            "campaign_id",
            "time_on_page_s",
            "scroll_depth_pct",
            "points",  # loyalty events
            "satisfaction_score",  # support ticket resolutions
        )
    ]
)
_CONTEXT = T.StructType(
    [
        T.StructField("device", T.StructType([T.StructField("type", T.StringType())])),
        T.StructField("location", T.StructType([T.StructField("country", T.StringType()), T.StructField("city", T.StringType())])),
        T.StructField("timezone", T.StringType()),
    ]
)

# A landing line the collector wrote for a message it refused inside an accepted batch: the
# message sits under "message", the reason under this field, and the stream quarantines it with that reason.
REJECTED_FIELD = "_lakecdp_rejected"

RAW_EVENT_SCHEMA = T.StructType(
    [
        T.StructField("messageId", T.StringType()),
        T.StructField("type", T.StringType()),
        T.StructField("event", T.StringType()),
        T.StructField("name", T.StringType()),
        T.StructField("userId", T.StringType()),
        T.StructField("anonymousId", T.StringType()),
        T.StructField("previousId", T.StringType()),
        T.StructField("timestamp", T.StringType()),
        T.StructField("sentAt", T.StringType()),
        T.StructField("receivedAt", T.StringType()),
        T.StructField("properties", _PROPERTIES),
        T.StructField("context", _CONTEXT),
        T.StructField(REJECTED_FIELD, T.StringType()),
    ]
)

# Set by Spark's JSON reader to the line itself when the line is not a JSON object (broken JSON,
# an array, a scalar): validity comes from the one parse, not a second pass over the text.
CORRUPT_RECORD = "_corrupt_record"
LINE_SCHEMA = T.StructType([*RAW_EVENT_SCHEMA.fields, T.StructField(CORRUPT_RECORD, T.StringType())])
