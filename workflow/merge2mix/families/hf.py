"""Loading from transformers the way every family does: one-line errors naming the model."""

from __future__ import annotations

from ..errors import CheckpointError, first_line


def load(cls, source: str, what: str | None = None, **kw):
    """`cls.from_pretrained(source, **kw)` (a Hub id or a directory); a failure is a CheckpointError."""
    try:
        return cls.from_pretrained(source, **kw)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"model '{source}': cannot be loaded{f' as {what}' if what else ''} ({first_line(e)})") from None
