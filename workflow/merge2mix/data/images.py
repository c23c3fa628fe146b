"""Images as data: every image dataset is materialised as PNG bytes in an `image` column of Parquet.

PNG keeps the pixels exact (the content hash is over them) and is what Hugging Face `Image` columns
hold too. Readers for the local formats image datasets come in: an image folder (one sub-folder per
class), a .npz with `images` and `labels` arrays (read with allow_pickle=False), and idx files (the
MNIST / Fashion-MNIST format, optionally gzipped). Nothing here unpickles.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def to_png(image) -> bytes:
    """A PIL image, a uint8 array (H, W) / (H, W, 3), or HF's {"bytes": ..., "path": ...} -> PNG bytes."""
    from PIL import Image

    if isinstance(image, dict):  # a Hugging Face Image column as pandas sees it
        if image.get("bytes"):
            image = Image.open(io.BytesIO(image["bytes"]))
        else:
            image = Image.open(image["path"])
    elif isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decode(png: bytes, size: int):
    """PNG bytes -> an RGB PIL image of size x size (bicubic; grayscale is repeated over 3 channels)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)


def frame(images, labels) -> pd.DataFrame:
    return pd.DataFrame({"image": [to_png(x) for x in images], "label": [str(v) for v in labels]})


def read_imagefolder(name: str, root: Path) -> tuple[pd.DataFrame, list[str]]:
    """root/<class>/<image>: the class names are the sub-folder names, sorted."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"dataset {name}: image folder {root} has {len(classes)} class sub-folder(s); need at least 2")
    rows = []
    for c in classes:
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((f, c))
    if not rows:
        raise DataError(f"dataset {name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    out = []
    for f, c in rows:
        try:
            out.append(to_png(f.read_bytes()))
        except Exception as e:
            raise DataError(f"dataset {name}: cannot read image {f}: {str(e).splitlines()[0]}") from None
    return pd.DataFrame({"image": out, "label": [c for _, c in rows]}), classes


def read_npz(name: str, path: Path) -> pd.DataFrame:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z or "labels" not in z:
                raise DataError(f"dataset {name}: {path} needs arrays 'images' and 'labels' (has {', '.join(z.files)})")
            images, labels = z["images"], z["labels"]
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"dataset {name}: cannot read {path} as npz: {str(e).splitlines()[0]}") from None
    return frame(_uint8(name, path, images), labels)


def _uint8(name, path, images: np.ndarray) -> np.ndarray:
    if images.ndim not in (3, 4):
        raise DataError(f"dataset {name}: {path}: images must be (N, H, W) or (N, H, W, 3), got shape {images.shape}")
    if images.dtype != np.uint8:
        hi = float(images.max()) if images.size else 0.0
        images = np.clip(images * (255.0 if hi <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return images


def read_idx_array(path: Path) -> np.ndarray:
    """The idx format (http://yann.lecun.com/exdb/mnist/): magic 0 0 <dtype> <ndim>, big-endian dims, data."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("not an idx file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"unknown idx data type 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"idx header says {tuple(dims)} but holds {data.size} values (truncated?)")
    return data.reshape(dims)


def read_idx(name: str, images_path: Path, labels_path: str | None) -> pd.DataFrame:
    if not labels_path:
        raise DataError(f"dataset {name}: local format idx needs labels_path (the idx labels file)")
    try:
        images, labels = read_idx_array(images_path), read_idx_array(Path(labels_path))
    except (OSError, ValueError) as e:
        raise DataError(f"dataset {name}: cannot read idx files {images_path} / {labels_path}: {e}") from None
    if len(images) != len(labels):
        raise DataError(f"dataset {name}: {len(images)} images but {len(labels)} labels in {labels_path}")
    return frame(_uint8(name, images_path, images), labels)
