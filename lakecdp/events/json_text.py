"""JSON text as Spark writes it, in Python: the texts bronze keeps (`properties_json`, `traits_json`, `context_json`).

Spark's JSON functions re-write what they read with Jackson's generator: no spaces, `\\b \\f \\n \\r \\t`
and `\\u00XX` (upper-case hex) for other control characters, integers as written, and every other
number as `java.lang.Double.toString` of its value. Two generators, two ways with characters beyond
U+FFFF: where a function copies a value it read (json_tuple, get_json_object, from_json into a
string) they become escaped surrogate pairs (`\\uD83D\\uDE42`); to_json writes them as they are.
Whatever this module cannot write the same way raises `NotExact`, and the caller leaves the line to Spark.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any


class NotExact(Exception):
    """Spark would write this value in a way this module does not reproduce."""


# Below 1e15 the JDK 17's Double.toString gives the shortest digits that read back as the value, as
# Python's repr does; above ~1.8e16 it sometimes adds one (9.0609284887914576E16 for 9.060928488791458e16),
# and for the smallest subnormal it writes 4.9E-324. Measured here on 1.5M values, 2026-12-07
# (JDK 17.0.15; no difference in this band).
_SURE_ABOVE, _SURE_BELOW = 1e-300, 1e15
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # `\ud83d`: half of a pair, or a lone surrogate
# A lone surrogate in a decoded string (Python keeps `"\ud83d"` as one; Java writes it otherwise in UTF-8).
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def java_double(x: float) -> str:
    """`Double.toString(x)`: decimal between 1e-3 and 1e7, else `d.dddE±n`, always a digit after the point."""
    if not math.isfinite(x) or (x != 0 and not _SURE_ABOVE <= abs(x) < _SURE_BELOW):
        raise NotExact
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    shortest = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, shortest.digits))
    exponent = len(digits) - 1 + int(shortest.exponent)  # x = d.ddd × 10^exponent
    if -3 <= exponent < 7:
        if exponent >= 0:
            whole, fraction = digits[: exponent + 1].ljust(exponent + 1, "0"), digits[exponent + 1 :]
        else:
            whole, fraction = "0", "0" * (-exponent - 1) + digits
        return f"{sign}{whole}.{fraction or '0'}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exponent}"


# Built once: json.dumps with arguments builds an encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _checked(written: str) -> str:
    if "\\u00" in written:  # a control character: Python writes its hex in lower case, Jackson in upper
        raise NotExact
    return written


def quoted(text: str) -> str:
    """A JSON string as to_json writes it."""
    return f'"{text}"' if _PLAIN.fullmatch(text) else _checked(json.dumps(text, ensure_ascii=False))


def _surrogates(found: re.Match[str]) -> str:
    code = ord(found.group()) - 0x10000
    return f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}"


def _copied(text: str) -> str:
    """A JSON string as Spark writes a value it copies."""
    written = quoted(text)
    return _ASTRAL.sub(_surrogates, written) if _ASTRAL.search(written) else written


def spark_json(value: Any, *, plain: bool = False) -> str:
    """A parsed JSON value as Spark writes a value it copies (compact, Jackson's escapes and numbers).

    `plain` (from `loads`): no number Python writes otherwise than Java and no character beyond U+FFFF,
    so Python's own encoder writes it, in one call.
    """
    if plain:
        return _checked(_ENCODER.encode(value))
    if isinstance(value, str):
        return _copied(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_copied(k)}:{spark_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(spark_json(v) for v in value) + "]"
    raise NotExact


def map_to_json(values: dict[str, str | None]) -> str:
    """to_json of a map of strings (characters beyond U+FFFF as they are, as Python writes them)."""
    return _checked(_ENCODER.encode(values))


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        raise NotExact  # a repeated key: Spark's readers do not all keep the same one
    return found


def _constant(name: str) -> Any:
    raise NotExact  # NaN, Infinity: Jackson's reader may refuse them


def loads(text: str) -> tuple[Any, bool]:
    """`json.loads`, refusing (NotExact) repeated keys and NaN/Infinity; and whether the value is
    `plain` for `spark_json`: every float between 1e-3 and 1e7 (or 0), where Python's repr and
    Java's Double.toString agree, and no character beyond U+FFFF."""
    odd: list[float] = []

    def number(written: str) -> float:
        x = float(written)
        if x != 0 and not 1e-3 <= abs(x) < 1e7:
            odd.append(x)
        return x

    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_float=number, parse_constant=_constant)
    except (ValueError, RecursionError):
        raise NotExact from None
    astral = SURROGATE_ESCAPE.search(text) if text.isascii() else _ASTRAL.search(text) or SURROGATE_ESCAPE.search(text)
    return value, not odd and not astral
