"""A small demo lake built once per test session and copied by each module that changes it.

`lakecdp demo` up to its stream step (30 customers, 4 days): customers from the CRM import, bronze,
identities, consent, profiles, segments and the online state. Building it takes about 40 s; a copy
takes well under one. A test streams what it plants from a folder of its own (`stream_planted`),
not through the demo's checkpoint, whose file list names the original landing folder.
"""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime
from pathlib import Path

END = datetime(2026, 11, 1, tzinfo=UTC)  # the demo world's frozen now


def build_demo_world(root: Path) -> Path:
    from lakecdp.clock import FrozenClock
    from lakecdp.config import load_settings
    from lakecdp.demo import run_demo

    run_demo(
        load_settings(env={}),
        lake_root=str(root / "lake"),
        landing_root=str(root / "landing"),
        out_dir=root / "out",
        customers=30,
        days=4,
        clock=FrozenClock(END),
        out=io.StringIO(),
        stop_after="stream",
    )
    return root


def copy_world(world: Path, dest: Path) -> Path:
    """The world's lake (its online state included) and landing folder under `dest`; returns `dest`."""
    for part in ("lake", "landing"):
        shutil.copytree(world / part, dest / part)
    return dest


def stream_planted(spark, lake, settings, root: Path, name: str, lines: str) -> Path:
    """`lines` as landing/planted/<name>, streamed into the lake at END; returns that folder."""
    from lakecdp.clock import FrozenClock
    from lakecdp.stream import run_stream
    from lakecdp.stream.job import default_checkpoint

    folder = root / "landing" / "planted"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(lines)
    run_stream(
        spark, lake, settings, source=str(folder), checkpoint=default_checkpoint(settings, lake.root, "planted"), clock=FrozenClock(END)
    )
    return folder
