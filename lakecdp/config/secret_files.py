"""Secret files generated on first use (the embedded default's pseudonym and master keys)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create_secret_file(path: Path, text: str) -> bool:
    """Write `text` to `path` with mode 0600 unless it exists; True when this call created it.

    Written whole to a private temp file, then linked into place: link fails when the file exists,
    so two processes starting together agree on one secret and none reads a half-written one.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True
