"""One way to validate a conf section and to say what is wrong with it: where the key was set (a conf
file or a LAKECDP__ variable), the key, what is wrong and the fix.

Each capability keeps its section's model (lakecdp.export.settings, models.settings...) and validates it
here, with at most a `fix` hook for the fixes only it knows ("never commit a secret..."). The loader
records where each key came from (`Sources`); commands pass them in when they check every section at
start (lakecdp.settings_check), so a typo in conf/local/esp.yaml is reported in conf/local/esp.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "LAKECDP__"

Sources = Mapping[tuple[str, ...], str]  # key path -> the file (or `env LAKECDP__...`) that set it
Fix = Callable[[tuple[str, ...], Mapping[str, Any]], str | None]  # (key path, pydantic error) -> the fix, or None: the usual one

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration problem, phrased as file + key + fix."""


def base_file(section: str) -> str:
    """Where a section lives unless something overrides it."""
    return f"conf/base/{section}.yaml"


def source_of(path: tuple[str, ...], sources: Sources | None) -> str:
    """The file or environment variable that set `path` (its deepest recorded part). Without `sources`: the
    section's base file; with them, a key nothing set is a default."""
    for n in range(len(path), 0, -1):
        if sources is not None and path[:n] in sources:
            return sources[path[:n]]
    return base_file(path[0]) if sources is None and path else "defaults"


def env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def validate_section(
    model: type[Model],
    section: str,
    raw: Mapping[str, Any] | None,
    *,
    sources: Sources | None = None,
    fix: Fix | None = None,
    tags: Collection[str] = (),
) -> Model:
    """`raw` (the section's mapping, as loaded) as `model`; a ConfigError names where, the key and the fix for each problem.

    Args:
        sources: where each key came from (Settings.sources); without them an error names conf/base/<section>.yaml.
        fix: the section's own fix for an error, where the usual one does not say enough.
        tags: the tags of discriminated unions in the section (a destination's `type`): pydantic puts them in
            the key path, where nobody wrote them, so they are left out of the key an error names.
    """
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as exc:
        raise ConfigError(describe(exc, (section,), sources=sources, fix=fix, tags=tags)) from None


def describe(
    exc: ValidationError,
    prefix: tuple[str, ...] = (),
    *,
    sources: Sources | None = None,
    fix: Fix | None = None,
    tags: Collection[str] = (),
) -> str:
    """Every problem in `exc`, a line each: `<where>: <key>: <what is wrong> (got <value>). Fix: <fix>.`"""
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        loc = tuple(part for i, part in enumerate(loc) if not (i >= 2 and part in tags))
        path = (*prefix, *loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "value_error" and not loc and " " not in message.partition(": ")[0] and ": " in message:
            # A check across the section's keys says which key it is about: "blocks.x.target.op: ..."
            where, message = message.split(": ", 1)
            path = (*path, *where.split("."))
        key = ".".join(path)
        remedy = fix(path, error) if fix is not None else None
        if remedy is None:
            if error["type"] == "extra_forbidden":
                remedy = f"remove '{path[-1]}' or check its spelling"
            elif error["type"] == "missing":
                remedy = f"add {key}"
            elif error["type"] == "value_error":
                remedy = f"change {key} as the message says"
            else:
                remedy = f"set {key} to a valid value (or override it with {env_name(path)})"
        got = error.get("input")
        shown = not isinstance(got, (dict, list)) and error["type"] not in ("extra_forbidden", "value_error")
        lines.append(f"{source_of(path, sources)}: {key}: {message}{f' (got {got!r})' if shown else ''}. Fix: {remedy}.")
    return f"invalid configuration{f' in {prefix[0]}' if prefix else ''}:\n  " + "\n  ".join(lines)
