"""Where a model came from: code version and library versions, recorded on every model card."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "joblib", "pyspark", "deltalake", "matplotlib", "lakecdp")


def code_version(start: Path | None = None) -> str:
    """`git:<sha>` of the checkout this package runs from, else `lakecdp <package version>`.

    Reads .git files directly instead of running git: training hosts often have no git binary.
    """
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        git_dir = folder / ".git"
        if git_dir.is_dir():
            sha = _head_sha(git_dir)
            if sha:
                return f"git:{sha}"
            break
    return f"lakecdp {_version('lakecdp') or 'unknown'}"


def _head_sha(git_dir: Path) -> str | None:
    head = (git_dir / "HEAD").read_text().strip() if (git_dir / "HEAD").is_file() else ""
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    loose = git_dir / ref
    if loose.is_file():
        return loose.read_text().strip()
    packed = git_dir / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{name: _version(name) for name in LIBRARIES}}
