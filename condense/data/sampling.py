"""Samples of a task's rows that stay the same from run to run: the stratified training sample a continual job
trains on, and the fixed test sample models are scored on.
"""

from __future__ import annotations

import numpy as np
import torch


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a random subset of ``size`` rows keeping class proportions (largest remainder)."""
    labels = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = size * counts / counts.sum()
    take = np.floor(quotas).astype(np.int64)
    by_remainder = np.argsort(-(quotas - take), kind="stable")
    take[by_remainder[: size - take.sum()]] += 1
    # A rare class could round to zero; when there is room, give it one example from the largest class.
    if size >= len(classes):
        for empty in np.flatnonzero(take == 0):
            take[np.argmax(take)] -= 1
            take[empty] = 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def training_rows(labels, size: int) -> np.ndarray:
    """The stratified sample of ``size`` of a training split's rows (its ``labels``) that every continual strategy
    trains on; all rows if there are fewer."""
    labels = np.asarray(labels)
    return stratified_indices(labels, size, seed=0) if size < len(labels) else np.arange(len(labels))


def fixed_subsample(total: int, size: int | None) -> torch.Tensor:
    """Sorted indices of ``size`` of ``total`` rows, the same draw in every run; all rows when size is None."""
    if size is None or size >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:size].sort().values
