"""An image split decoded once into a uint8 tensor; batches are normalised on demand.

Shared by the image families. Every example keeps the index of the dataset it came from (`source`), so
a mixture batch can be scored with each dataset's own head (clip) and the target with its own.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.images import decode


class EncodedImages:
    def __init__(self, df, label_spaces: dict[str, list[str]], size: int, mean, std, sources: list[str]):
        """`label_spaces`: dataset name -> its label names (all the same list for a shared head);
        `sources`: the dataset name of each row."""
        self.names = sorted(label_spaces)
        index = {n: {l: i for i, l in enumerate(label_spaces[n])} for n in self.names}
        self.pixels = torch.from_numpy(np.stack([np.asarray(decode(b, size)) for b in df["image"]])).permute(0, 3, 1, 2)
        self.labels = torch.tensor([index[s][l] for s, l in zip(sources, df["label"])], dtype=torch.long)
        self.source = torch.tensor([self.names.index(s) for s in sources], dtype=torch.long)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def batch(self, idx, device="cpu") -> dict:
        x = (self.pixels[idx].float() / 255.0 - self.mean) / self.std
        return {"pixel_values": x.to(device), "labels": self.labels[idx].to(device), "source": self.source[idx].to(device)}

    def batches(self, batch_size, device="cpu", order=None):
        order = torch.arange(len(self)) if order is None else order
        for s in range(0, len(order), batch_size):
            yield self.batch(order[s : s + batch_size].tolist(), device)


def sources_of(df, names) -> list[str]:
    """Each row's dataset: the `source` column of a mixture, else the one dataset `names` holds."""
    if "source" in df:
        return df["source"].tolist()
    if len(names) != 1:
        raise ValueError(f"a split without a source column needs exactly one dataset, got {sorted(names)}")
    return [next(iter(names))] * len(df)
