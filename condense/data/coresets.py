"""Coreset selection: pick k real examples per class from encoder features.

Every selector returns int64 indices into the N input rows, k per class, grouped by
class in class order (class 0's k, then class 1's, ...), each group in selection order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import pairwise_distances

from condense.registry import lookup

logger = logging.getLogger(__name__)

__all__ = ["SELECTORS", "herding", "kcenters", "random_subset", "select_coreset"]


def _to_numpy(x: Any) -> np.ndarray:
    """Array view of a numpy array, torch tensor (on any device) or sequence (no torch import needed)."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch.Tensor: force copies it to host memory, detached
        x = x.numpy(force=True)
    return np.asarray(x)


def _check_labels(labels: Any) -> np.ndarray:
    labels = _to_numpy(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be in [0, C), got min label {labels.min()}")
    return labels


def _check_features(features: Any, n: int) -> np.ndarray:
    features = _to_numpy(features)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d), got shape {features.shape}")
    if features.shape[0] != n:
        raise ValueError(f"features has {features.shape[0]} rows but labels has {n} entries")
    if not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float32)
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or infinite values")
    return features


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    return int(k)


def _class_members(labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Indices of each class 0..C-1 (C = max label + 1), checking each has at least k."""
    if labels.size == 0:
        raise ValueError("labels is empty: nothing to select from")
    num_classes = int(labels.max()) + 1
    # A stable sort keeps each class's indices ascending, so ties break the same way every run.
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    members = [order[bounds[c] : bounds[c + 1]] for c in range(num_classes)]
    counts = [len(m) for m in members]
    for c, count in enumerate(counts):
        if count < k:
            raise ValueError(
                f"class {c} has {count} examples, fewer than k={k} "
                f"(examples per class: {dict(enumerate(counts))})"
            )
    return members


def _concat(groups: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(groups).astype(np.int64, copy=False)


def random_subset(labels: Any, k: int, seed: int) -> np.ndarray:
    """k indices per class drawn uniformly without replacement by a Generator seeded with `seed`."""
    labels = _check_labels(labels)
    k = _check_k(k)
    members = _class_members(labels, k)
    rng = np.random.default_rng(seed)
    return _concat([rng.choice(m, size=k, replace=False) for m in members])


def _kcenters_one(x: np.ndarray, k: int) -> np.ndarray:
    """Farthest-first traversal within one class; positions into x."""
    centre = x.mean(axis=0, keepdims=True)
    first = int(np.argmin(pairwise_distances(x, centre).ravel()))
    picks = [first]
    # Distance of every point to its nearest chosen centre, updated one centre at a time
    # so memory stays O(n) rather than O(n^2).
    min_dist = pairwise_distances(x, x[first : first + 1]).ravel()
    # -inf keeps chosen points from being re-picked when the rest are exact duplicates.
    min_dist[first] = -np.inf
    for _ in range(k - 1):
        nxt = int(np.argmax(min_dist))
        picks.append(nxt)
        np.minimum(min_dist, pairwise_distances(x, x[nxt : nxt + 1]).ravel(), out=min_dist)
        min_dist[picks] = -np.inf
    return np.asarray(picks, dtype=np.int64)


def kcenters(features: Any, labels: Any, k: int, seed: int = 0) -> np.ndarray:
    """Greedy k-center (Sener & Savarese 2018) per class, starting from the centroid-nearest example.

    Deterministic; `seed` is accepted for a uniform selector signature and unused.
    """
    labels = _check_labels(labels)
    features = _check_features(features, len(labels))
    k = _check_k(k)
    members = _class_members(labels, k)
    return _concat([m[_kcenters_one(features[m], k)] for m in members])


def _herding_one(x: np.ndarray, k: int) -> np.ndarray:
    """Welling (2009) / iCaRL herding within one class; positions into x."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    phi = x / np.maximum(norms, np.finfo(x.dtype).tiny)
    mu = phi.mean(axis=0)
    sq_norms = np.einsum("ij,ij->i", phi, phi)
    running_sum = np.zeros_like(mu)
    chosen = np.zeros(len(phi), dtype=bool)
    picks: list[int] = []
    for t in range(1, k + 1):
        # ||mu - (S + phi_i)/t||^2 * t^2 = ||t*mu - S||^2 - 2 phi_i.(t*mu - S) + ||phi_i||^2;
        # the first term is constant over i, so drop it.
        target = t * mu - running_sum
        score = sq_norms - 2.0 * (phi @ target)
        score[chosen] = np.inf
        i = int(np.argmin(score))
        picks.append(i)
        chosen[i] = True
        running_sum += phi[i]
    return np.asarray(picks, dtype=np.int64)


def herding(features: Any, labels: Any, k: int, seed: int = 0) -> np.ndarray:
    """Herding per class on L2-normalised features: each pick keeps the running mean nearest the class mean.

    Deterministic; `seed` is accepted for a uniform selector signature and unused.
    """
    labels = _check_labels(labels)
    features = _check_features(features, len(labels))
    k = _check_k(k)
    members = _class_members(labels, k)
    return _concat([m[_herding_one(features[m], k)] for m in members])


def _random_selector(features: Any, labels: Any, k: int, seed: int = 0) -> np.ndarray:
    """random_subset with the common selector signature; features only checked for row count."""
    labels_arr = _check_labels(labels)
    n_rows = len(features)
    if n_rows != len(labels_arr):
        raise ValueError(f"features has {n_rows} rows but labels has {len(labels_arr)} entries")
    return random_subset(labels_arr, k, seed)


# The selector registry: eval.baselines names its keys; each takes (features, labels, k, seed).
SELECTORS: dict[str, Callable[..., np.ndarray]] = {
    "random": _random_selector,
    "kcenters": kcenters,
    "herding": herding,
}


def select_coreset(method: str, features: Any, labels: Any, k: int, seed: int = 0) -> np.ndarray:
    """``SELECTORS[method]``, the only dispatch; an unknown method is a ValueError naming the config key and choices."""
    indices = lookup(SELECTORS, "eval.baselines", method)(features, labels, k, seed)
    logger.debug("coreset %s: selected %d indices (k=%d, seed=%d)", method, len(indices), k, seed)
    return indices
