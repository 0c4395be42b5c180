"""Contact PII from identify calls lives in `customers` only, never in bronze.

Identify traits such as email and names are split off at ingest: `customers` gets the contact
fields (the newest identify wins over an older row, field by field), and bronze `traits_json`
keeps only the other traits. A message without top-level traits takes `context.traits` as its
traits (Segment's spec allows both; RudderStack's SDKs send identify traits only there).
`context.traits` and `context.ip` are dropped from `context_json`.

Contact data sent anywhere else is redacted before bronze, by key and by value:
- a trait key that names contact data, after normalizing it (`EMAIL_ADDRESS`, `emailAddress`
  and `" email"` are all `email...`), is dropped at the top level of traits;
- at any depth of properties and traits, a string or number under a key that names an email,
  phone, street address or a person's first/last name is replaced by "[redacted]" (context holds
  Segment's own keys: it is checked by value);
- anywhere, an email address (also URL-encoded, `%40`) and the value of a URL query parameter
  named like email or phone (`?email=...`) are redacted, also inside longer text; so is a
  formatted phone number (`+44 20 7946 0958`, `(555) 123-4567`) in properties, traits, the URL
  and the search.
Objects and booleans under such keys are kept (`prefs.email.marketing: true` is consent, not
contact data); the values inside them are checked like any other.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

from pyspark.sql import Column, DataFrame, functions as F
from pyspark.sql.types import MapType, StringType

from lakecdp.events.json_text import LONE_SURROGATE, NotExact, loads, map_to_json, spark_json
from lakecdp.lake import AppTxn, Lake
from lakecdp.lake.delta_rs import to_arrow
from lakecdp.privacy.pseudonyms import PATTERN, Pseudonymizer

CONTEXT_PII = ("traits", "ip")
CONTACT_COLUMNS = ("email", "first_name", "last_name")
# Top-level trait keys dropped from bronze, normalized (`normalized_key`): Segment's reserved traits
# that identify or reach a person (https://segment.com/docs/connections/spec/identify/#traits) and
# the spellings clients send for them.
CONTACT_TRAIT_KEYS = frozenset(
    {
        "email",
        "emailaddress",
        "mail",
        "name",
        "firstname",
        "lastname",
        "fullname",
        "phone",
        "phonenumber",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "cell",
        "cellphone",
        "telephone",
        "address",
        "streetaddress",
        "birthday",
        "dateofbirth",
        "dob",
        "username",
        "avatar",
    }
)
# Where customers' contact columns come from in traits, normalized.
_CONTACT_SOURCES = {
    "email": ("email", "emailaddress", "mail"),
    "first_name": ("firstname",),
    "last_name": ("lastname",),
}
REDACTED = "[redacted]"

# Java regexes (Spark's regexp_replace) over JSON text. _SEP: what clients put between words of a key.
# A contact word may follow other words when a separator or a camelCase step parts them
# (`billing_phone`, `customerEmail`), never inside a word (`smartphone`, `hotel`): one character
# class and a lazy quantifier, so a long key cannot make the regex backtrack exponentially.
_SEP = r"[\s_.-]*"
_AFTER_WORDS = r"(?:[A-Za-z0-9\s_.-]*?(?:[\s_.-]|(?-i:(?<=[a-z0-9])(?=[A-Z]))))?"
_CONTACT_WORDS = (
    rf"e{_SEP}mail(?:{_SEP}addr(?:ess)?)?|(?:tele)?phone(?:{_SEP}(?:number|no|num))?|(?:mobile|cell){_SEP}(?:phone|number|no|num)?"
    rf"|street(?:{_SEP}address)?|address(?:{_SEP}(?:line)?{_SEP}[12])?|(?:first|last|full|given|family|sur){_SEP}name"
)
_CONTACT_KEY = rf'"{_SEP}(?:{_AFTER_WORDS}(?:{_CONTACT_WORDS})|tel){_SEP}"'
_JSON_SCALAR = r'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*'
_KEYED_VALUE = rf"(?i)({_CONTACT_KEY}\s*:\s*)(?:{_JSON_SCALAR})"
_EMAIL = r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
# A formatted phone number, alone or inside text: international (+ and 7+ more digits) or NANP's
# (555) 123-4567 / 555-123-4567. Bare digit runs are left to the keys: order ids look the same.
_PHONE = r"(?=[+(0-9])(?<![0-9A-Za-z+-])(?:\+[0-9][0-9 ().-]{6,}[0-9]|\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4})(?![0-9])"
# A cheap test that a text may hold a phone number, before the phone regex runs.
_PHONE_HINT = r"[0-9]{3}[ .)-]|\+[0-9]"
_URL_PARAMETER = r'(?i)([?&;#][a-z_-]*(?:e-?mail|phone|mobile|tel)[a-z_-]*=)[^&#;"\s\\]*'


def normalized_key(key: Column) -> Column:
    """A JSON key as compared with contact names: lower case, without spaces, `_`, `-` or `.`."""
    return F.regexp_replace(F.lower(key), r"[\s_.-]", "")


def with_contact_data_redacted(rows: DataFrame, *, keyed: Sequence[str], texts: Sequence[str], written: Sequence[str] = ()) -> DataFrame:
    """`rows` with contact data redacted (see the module doc).

    Args:
        keyed: JSON with the client's own keys (properties, traits): by key and by value.
        texts: the client's free text (URLs, searches): by value.
        written: JSON an SDK writes (context): emails and contact-named URL parameters; not the
            phone pattern, which a user agent's version numbers keep busy on every event.

    One projection per step, each regex behind a cheap test of the text it runs on. Run on every
    event, the regexes cost several times the whole bronze projection: a regex is tried at every
    character, and an email's `[...]+@` backtracks over every run of letters; a `contains` is one
    byte search. Nested in one expression, each step's text appeared in both branches of the
    next: the generated code outgrew Janino and Spark fell back to interpreting it (measured:
    bronze projection of 230k events 4.1 s -> 31.9 s; staged and tested: see bench/bench_redact.py).
    """

    def step(frame: DataFrame, columns: Sequence[str], may_match: Callable[[Column], Column], pattern: str, replacement: str) -> DataFrame:
        return frame.withColumns(
            {c: F.when(may_match(F.col(c)), F.regexp_replace(F.col(c), pattern, replacement)).otherwise(F.col(c)) for c in columns}
        )

    sent = [*keyed, *texts]
    return (
        rows.transform(step, keyed, may_have_contact_key, _KEYED_VALUE, f'$1"{REDACTED}"')
        .transform(step, [*sent, *written], lambda c: c.contains("="), _URL_PARAMETER, f"$1{REDACTED}")
        .transform(step, [*sent, *written], lambda c: c.contains("@") | c.contains("%40"), _EMAIL, REDACTED)
        .transform(step, sent, lambda c: c.rlike(_PHONE_HINT), _PHONE, REDACTED)
    )


# How a key naming contact data ends, lower-cased; and endings that do only with one of the words in the text.
_KEY_ENDS = ('mail":', 'addr":', 'address":', 'phone":', 'mobile":', 'cell":', 'street":', '"tel":', '_":', '-":', '.":', ' ":', '" :')
_KEY_ENDS_WITH_WORDS = (
    (('number":', 'no":', 'num":'), ("phone", "mobile", "cell")),
    (('1":', '2":'), ("address",)),
    (('name":',), ("first", "last", "full", "given", "family", "sur")),
)


def may_have_contact_key(json_text: Column) -> Column:
    """False only when no key of the text can name contact data: byte searches for how such a key
    ends (`mail":`, `phone":`, ...), so that the key regex runs on few texts. Spark's JSON functions
    write keys as `"key":` (no space); `" :` sends a text written otherwise to the regex."""
    lowered = F.lower(json_text)

    def has(needles: Sequence[str]) -> Column:
        return functools.reduce(operator.or_, [lowered.contains(n) for n in needles])

    return functools.reduce(operator.or_, [has(_KEY_ENDS), *(has(ends) & has(words) for ends, words in _KEY_ENDS_WITH_WORDS)])


# The same redaction of one text on the driver, for the stream's Python bronze rows
# (lakecdp.online.bronze). These patterns mean the same to Java's regex engine and to Python's
# under re.ASCII: \s is [ \t\n\x0B\f\r] in both, (?i) folds ASCII letters only, and both search
# leftmost-first with the same greedy and lazy choices. tests/integration/test_online_bronze.py
# holds the two equal.
_KEYED_RE, _URL_RE, _EMAIL_RE, _PHONE_RE, _PHONE_HINT_RE = (
    re.compile(p, re.ASCII) for p in (_KEYED_VALUE, _URL_PARAMETER, _EMAIL, _PHONE, _PHONE_HINT)
)
_KEY_SEPARATORS = re.compile(r"[\s_.-]", re.ASCII)


def redacted(text: str | None, kind: Literal["keyed", "text", "written"]) -> str | None:
    """`with_contact_data_redacted` for one text: `kind` says which of its lists the text is in."""
    if text is None:
        return None
    if kind == "keyed" and _may_have_contact_key(text):
        text = _KEYED_RE.sub(f'\\g<1>"{REDACTED}"', text)
    if "=" in text:
        text = _URL_RE.sub(f"\\g<1>{REDACTED}", text)
    if "@" in text or "%40" in text:
        text = _EMAIL_RE.sub(REDACTED, text)
    if kind != "written" and _PHONE_HINT_RE.search(text):
        text = _PHONE_RE.sub(REDACTED, text)
    return text


_KEY_ENDINGS = re.compile("|".join(re.escape(n) for n in _KEY_ENDS))


def _may_have_contact_key(text: str) -> bool:
    """`may_have_contact_key` for one text."""
    lowered = text.lower()
    return _KEY_ENDINGS.search(lowered) is not None or any(
        any(n in lowered for n in ends) and any(w in lowered for w in words) for ends, words in _KEY_ENDS_WITH_WORDS
    )


def text_without_keys(
    json_text: str | None, keys: Collection[str], *, parsed: dict[str, Any] | None = None, plain: bool = False
) -> str | None:
    """`without_keys` for one text; NotExact where Spark's reading of it is not reproduced here.

    `parsed`, `plain`: the text's value and plainness (json_text.loads) when the caller has them.
    """
    if json_text is None:
        return None
    if parsed is None:
        try:
            found, plain = loads(json_text)
        except NotExact:
            if json_text.lstrip().startswith(("{", "[")):
                raise  # broken or repeated-key JSON: what Spark's map reader makes of it is not redone here
            return json_text  # not JSON: from_json gives null, and the text stays
        if not isinstance(found, dict):
            raise NotExact
        parsed = found
    # from_json reads each value as a string (JSON text for any other type); to_json quotes it.
    return map_to_json(
        {k: v if v is None or isinstance(v, str) else spark_json(v, plain=plain) for k, v in parsed.items() if _normalized(k) not in keys}
    )


@functools.lru_cache(maxsize=4096)
def _normalized(key: str) -> str:
    """`normalized_key` for one key."""
    return _KEY_SEPARATORS.sub("", key.lower())


def message_traits(traits_text: Column, context_text: Column) -> Column:
    """A message's traits: top-level `traits`, else `context.traits` (where RudderStack's SDKs put them)."""
    return F.coalesce(traits_text, F.get_json_object(context_text, "$.traits"))


def without_keys(json_text: Column, keys: Collection[str]) -> Column:
    """A JSON object's text without the given top-level keys (compared as `normalized_key`).

    Values come back as JSON strings of their text (a nested object stays readable with a
    second get_json_object); a value that is not an object passes through unchanged.
    """
    as_map = F.from_json(json_text, MapType(StringType(), StringType()))  # type: ignore[arg-type]  # pyspark's hint omits MapType, which from_json takes
    kept = F.to_json(F.map_filter(as_map, lambda key, _: ~normalized_key(key).isin(*keys)))
    return F.when(as_map.isNull(), json_text).otherwise(kept)


def contacts_from_identifies(valid: DataFrame, pseudonyms: Pseudonymizer) -> DataFrame:
    """Per identified user in a parsed batch: the pseudonym (`customer_id`) and the retailer's id
    (`external_id`), each contact field's newest non-null value and its time (`email_at`, ...), and
    the newest identify (`at`); users whose identifies carried none are left out."""
    e = F.col("e")

    traits = F.from_json(
        message_traits(F.get_json_object("raw", "$.traits"), F.get_json_object("raw", "$.context")),
        MapType(StringType(), StringType()),  # type: ignore[arg-type]  # pyspark's hint omits MapType, which from_json takes
    )

    def trait(column: str) -> Column:
        """The last trait whose normalized key is one of the column's sources. from_json keeps a repeated
        key's every value, in order; the last is the one JSON readers (JavaScript's, Python's) keep."""
        matching = F.map_filter(traits, lambda key, _: normalized_key(key).isin(*_CONTACT_SOURCES[column]))
        return F.try_element_at(F.map_values(matching), F.lit(-1))

    rows = valid.filter((e.type == "identify") & e.userId.isNotNull()).select(
        pseudonyms.column(e.userId).alias("customer_id"),
        e.userId.alias("external_id"),
        F.lower(F.trim(trait("email"))).alias("email"),
        trait("first_name").alias("first_name"),
        trait("last_name").alias("last_name"),
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


def identify_contacts(identifies: Iterable[tuple[Mapping[str, Any], bool, int]], pseudonyms: Pseudonymizer) -> list[dict[str, Any]]:
    """`contacts_from_identifies` on the driver: `identifies` holds each valid identify message as
    json_text.loads read it, its plainness and its event time (µs), in landing order; times in µs.

    NotExact for a message or a customer whose contacts Spark reads otherwise than here (an id or
    email that is not an ASCII string, a traits value that is not an object, two values of one
    field at one instant): the caller leaves those to Spark.
    """
    found: dict[str, list[tuple[str, dict[str, Any], int]]] = {}
    for message, plain, at in identifies:
        user_id = message.get("userId")
        if user_id is None:
            continue
        if not isinstance(user_id, str) or not user_id.isprintable():
            raise NotExact  # Java's `$` in the pseudonym pattern also matches before \r, \u0085, \u2028 ...
        traits = _identify_traits(message)
        if traits is None:
            continue
        values = {column: _last_trait(traits, column, plain) for column in CONTACT_COLUMNS}
        email = values["email"]
        if email is not None:
            if not email.isascii():  # Java's and Python's lower-casing differ beyond ASCII
                raise NotExact
            values["email"] = email.strip(" ").lower()  # Spark's trim strips spaces only
        if any(v is not None for v in values.values()):
            found.setdefault(pseudonyms.of(user_id), []).append((user_id, values, at))
    return [_customer_contacts(customer_id, sent) for customer_id, sent in found.items()]


def _identify_traits(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """`message_traits` of a message read as the map contacts_from_identifies reads."""
    traits = message.get("traits")
    if traits is None:
        context = message.get("context")
        traits = context.get("traits") if isinstance(context, dict) else None
    if traits is None or isinstance(traits, dict):
        return traits
    raise NotExact  # a string holding JSON, an array: Spark's reading of it is not redone here


def _last_trait(traits: Mapping[str, Any], column: str, plain: bool) -> str | None:
    """`trait(column)` of contacts_from_identifies: the last matching key's value as from_json's map holds it."""
    value = None
    for key, candidate in traits.items():
        if _normalized(key) in _CONTACT_SOURCES[column]:
            value = candidate
    if value is None or isinstance(value, str):
        if value is not None and LONE_SURROGATE.search(value):
            raise NotExact  # a lone surrogate escape: Java writes it otherwise
        return value
    return spark_json(value, plain=plain)


def _customer_contacts(customer_id: str, sent: list[tuple[str, dict[str, Any], int]]) -> dict[str, Any]:
    """One customer's row of contacts_from_identifies from the (id, contact values, time) of its identifies."""
    external = [user_id for user_id, _, _ in sent if not PATTERN.match(user_id)]
    row: dict[str, Any] = {"customer_id": customer_id, "external_id": max(external, default=None)}
    for column in CONTACT_COLUMNS:
        dated = [(at, values[column]) for _, values, at in sent if values[column] is not None]
        newest = max((at for at, _ in dated), default=None)
        at_newest = {value for at, value in dated if at == newest}
        if len(at_newest) > 1:  # max_by's pick among equal times depends on Spark's row order
            raise NotExact
        row[column], row[f"{column}_at"] = (at_newest.pop() if at_newest else None), newest
    row["at"] = max(at for _, _, at in sent)
    return row


def fold_contact_rows(
    contacts: Iterable[Mapping[str, Any]], existing: Mapping[str, Mapping[str, Any]], *, source: str = "identify"
) -> list[dict[str, Any]]:
    """`fold_contacts` on the driver: `existing` maps customer_id to its `customers` row (contacts in
    clear, as Lake.contact_rows reads them); times in µs."""
    folded = []
    for new in contacts:
        old = existing.get(new["customer_id"]) or {}
        updated = old.get("updated_at")
        row = {"customer_id": new["customer_id"], "external_id": _first_set(old.get("external_id"), new["external_id"])}
        for column in CONTACT_COLUMNS:
            is_newer = updated is None or new[f"{column}_at"] is not None and new[f"{column}_at"] >= updated
            row[column] = new[column] if new[column] is not None and is_newer else _first_set(old.get(column), new[column])
        row |= {c: old.get(c) for c in ("country", "city", "signup_date", "marketing_opt_in")}
        row["source"] = _first_set(old.get("source"), source)
        row["updated_at"] = max(t for t in (updated, new["at"]) if t is not None)
        folded.append(row)
    return folded


def _first_set(*values: Any) -> Any:
    """SQL's coalesce."""
    return next((v for v in values if v is not None), None)


def upsert_contacts(lake: Lake, contacts: DataFrame, *, txn: AppTxn | None = None) -> None:
    """Merge a batch's identify contacts into `customers` (see `fold_contacts`)."""
    existing = lake.read("customers").join(contacts.select("customer_id"), on="customer_id", how="left_semi")
    # One Spark job folds the batch's few contacts into their rows; delta-rs then merges them (Lake.merge_rows),
    # sparing a stream's flush the seconds of a delta-spark MERGE beside its live batches.
    lake.merge_rows("customers", to_arrow(lake.spec("customers"), fold_contacts(contacts, existing)), txn=txn)


def fold_contacts(contacts: DataFrame, existing: DataFrame, *, source: str = "identify") -> DataFrame:
    """`customers` rows for the contacts: a field sent after the row's last update replaces it,
    field by field; CRM columns (opt-in, signup date, source) are kept; a new customer gets
    `source`."""
    n, o = contacts.alias("n"), existing.alias("o")

    def pick(column: str) -> Column:
        """The identify's value when it is newer than the stored row, else the stored one (if any)."""
        new, old = F.col(f"n.{column}"), F.col(f"o.{column}")
        is_newer = F.col("o.updated_at").isNull() | (F.col(f"n.{column}_at") >= F.col("o.updated_at"))
        return F.when(new.isNotNull() & is_newer, new).otherwise(F.coalesce(old, new)).alias(column)

    return n.join(o, on="customer_id", how="left").select(
        "customer_id",
        F.coalesce("o.external_id", "n.external_id").alias("external_id"),
        *[pick(c) for c in CONTACT_COLUMNS],
        F.col("o.country"),
        F.col("o.city"),
        F.col("o.signup_date"),
        F.col("o.marketing_opt_in"),
        F.coalesce(F.col("o.source"), F.lit(source)).alias("source"),
        F.greatest(F.col("o.updated_at"), F.col("n.at")).alias("updated_at"),
    )
