"""The resize pipeline's torch Dataset over prepared LE/DES/mask triples (prepared.py), augmented per epoch."""

from __future__ import annotations

import numpy as np
import torch

from VirtualContrastTraining.data.augment import make_augmentation, sample_seed
from VirtualContrastTraining.data.prepared import PreparedCase
from VirtualContrastTraining.errors import InputError


class PairedDataset:
    """Torch map-style dataset of prepared LE/DES/mask triples.

    Items: le, des, mask as (1, S, S) float32 tensors, plus index and has_mask.
    With `augment`, each item is augmented with a seed derived from (seed,
    epoch, index), so any epoch of any run can be replayed exactly; call
    `set_epoch` at the start of each epoch (with a DataLoader, without
    persistent_workers, whose copies of the dataset would keep the old epoch).
    Duck-typed (len + getitem): a DataLoader needs no more.
    """

    def __init__(self, prepared: list[PreparedCase], augment: bool, seed: int, prob: float = 0.3):
        missing = [p.case.le_path for p in prepared if p.des is None]
        if missing:
            raise InputError(missing[0], f"has no DES image: training needs LE/DES pairs ({len(missing)} such case(s))")
        self.prepared = prepared
        self.seed = int(seed)
        self.epoch = 0
        self.augmentation = None
        if augment and prob > 0 and prepared:
            self.augmentation = make_augmentation(prob=prob, size=prepared[0].le.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, index: int) -> dict:
        p = self.prepared[index]
        item = {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]
                for k, a in (("le", p.le), ("des", p.des), ("mask", p.mask))}
        if self.augmentation is not None:
            item = self.augmentation(item, seed=sample_seed(self.seed, self.epoch, index))
        return {**item, "index": index, "has_mask": p.has_mask}
