"""Load settings from conf/base, conf/local and the environment, with errors that name the source."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lakecdp.config.durations import parse_duration
from lakecdp.config.models import Settings
from lakecdp.config.sections import ENV_PREFIX, ConfigError, describe

CONF_DIR_ENV = "LAKECDP_CONF_DIR"

__all__ = ["ConfigError", "load_settings", "parse_duration", "default_conf_dir"]

Provenance = dict[tuple[str, ...], str]


def default_conf_dir() -> Path:
    """$LAKECDP_CONF_DIR, else ./conf when it exists, else the conf/ beside this checkout."""
    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV])
    if (Path.cwd() / "conf" / "base").is_dir():
        return Path.cwd() / "conf"
    return Path(__file__).resolve().parents[2] / "conf"


def load_settings(
    conf_dir: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge conf/base/*.yaml, conf/local/*.yaml, LAKECDP__* env vars and overrides; validate."""
    conf_dir = Path(conf_dir) if conf_dir is not None else default_conf_dir()
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    provenance: Provenance = {}

    base_files = sorted((conf_dir / "base").glob("*.yaml"))
    if not base_files:
        raise ConfigError(f"{conf_dir / 'base'}: no *.yaml files found. Fix: run from the repo root or set {CONF_DIR_ENV}.")
    for path in base_files:
        document = _read_yaml(path)
        for key in document:
            if key in merged:
                raise ConfigError(
                    f"{path}: top-level key '{key}' is also defined in {provenance[(key,)]}. Fix: keep each section in one base file."
                )
        _deep_merge(merged, document, str(path), provenance, ())
    for path in sorted((conf_dir / "local").glob("*.yaml")):
        _deep_merge(merged, _read_yaml(path), str(path), provenance, ())
    _deep_merge(merged, _env_overrides(env), "", provenance, (), env_source=True)
    if overrides:
        _deep_merge(merged, dict(overrides), "overrides", provenance, ())

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe(exc, sources=provenance)) from None
    settings._sources = provenance
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix the syntax at the position shown.") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, found {type(document).__name__}.")
    return document


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        # YAML scalar parsing so LAKECDP__SPARK__SHUFFLE_PARTITIONS=8 is an int
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else raw
    return tree


def _deep_merge(
    target: dict[str, Any],
    update: Mapping[str, Any],
    source: str,
    provenance: Provenance,
    prefix: tuple[str, ...],
    *,
    env_source: bool = False,
) -> None:
    for key, value in update.items():
        path = (*prefix, str(key))
        origin = f"env {ENV_PREFIX}{'__'.join(p.upper() for p in path)}" if env_source else source
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            provenance.setdefault(path, origin)
            _deep_merge(target[key], value, source, provenance, path, env_source=env_source)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value
            provenance[path] = origin
            _record_children(value, origin, provenance, path)


def _record_children(value: Any, origin: str, provenance: Provenance, path: tuple[str, ...]) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            provenance[(*path, str(key))] = origin
            _record_children(child, origin, provenance, (*path, str(key)))
