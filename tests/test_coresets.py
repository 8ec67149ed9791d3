import numpy as np
import pytest
import torch

from condense.data.coresets import SELECTORS, herding, kcenters, random_subset, select_coreset


def _gaussian_classes(n_per_class=(60, 80, 70), d=16, seed=0):
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for c, n in enumerate(n_per_class):
        centre = rng.normal(scale=3.0, size=d)
        feats.append(centre + rng.normal(size=(n, d)))
        labels.append(np.full(n, c))
    # Shuffle so class members are interleaved in the input order.
    perm = rng.permutation(sum(n_per_class))
    return np.concatenate(feats)[perm].astype(np.float32), np.concatenate(labels)[perm]


@pytest.mark.parametrize("method", sorted(SELECTORS))
def test_k_per_class_class_ordered_no_duplicates(method):
    x, y = _gaussian_classes()
    k = 5
    idx = select_coreset(method, x, y, k, seed=3)
    assert idx.dtype == np.int64
    assert idx.shape == (3 * k,)
    assert len(set(idx.tolist())) == len(idx)
    np.testing.assert_array_equal(y[idx], np.repeat(np.arange(3), k))


@pytest.mark.parametrize("method", sorted(SELECTORS))
def test_deterministic_and_accepts_tensors(method):
    x, y = _gaussian_classes()
    a = select_coreset(method, x, y, 4, seed=7)
    b = select_coreset(method, torch.from_numpy(x), torch.from_numpy(y), 4, seed=7)
    np.testing.assert_array_equal(a, b)
    trained = torch.from_numpy(x).requires_grad_(True)  # features straight from a model: detached, then read
    np.testing.assert_array_equal(a, select_coreset(method, trained, torch.from_numpy(y), 4, seed=7))


def test_random_depends_on_seed():
    _, y = _gaussian_classes()
    a, b = random_subset(y, 5, seed=0), random_subset(y, 5, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, random_subset(y, 5, seed=1))


def test_kcenters_k1_picks_centroid_nearest():
    x, y = _gaussian_classes()
    idx = kcenters(x, y, 1)
    for c in range(3):
        members = np.flatnonzero(y == c)
        dists = np.linalg.norm(x[members] - x[members].mean(axis=0), axis=1)
        assert idx[c] == members[np.argmin(dists)]


def test_kcenters_is_farthest_first():
    x, y = _gaussian_classes()
    idx = kcenters(x, y, 4)[:4]  # class 0's picks, in selection order
    members = np.flatnonzero(y == 0)
    for j in range(1, 4):
        d_to_centres = np.linalg.norm(x[members][:, None] - x[idx[:j]][None], axis=2).min(axis=1)
        assert idx[j] == members[np.argmax(d_to_centres)]


def test_kcenters_handles_duplicate_points():
    x = np.zeros((6, 3), dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1, 1])
    idx = kcenters(x, y, 3)
    assert sorted(idx.tolist()) == list(range(6))


def test_herding_mean_closer_than_random():
    x, y = _gaussian_classes(n_per_class=(200, 200), d=32, seed=1)
    phi = x / np.linalg.norm(x, axis=1, keepdims=True)
    k = 5

    def mean_gap(idx):
        gaps = []
        for c in range(2):
            picks = idx[c * k : (c + 1) * k]
            gaps.append(np.linalg.norm(phi[picks].mean(axis=0) - phi[y == c].mean(axis=0)))
        return np.mean(gaps)

    herd_gap = mean_gap(herding(x, y, k))
    random_gaps = [mean_gap(random_subset(y, k, seed=s)) for s in range(30)]
    assert herd_gap < np.mean(random_gaps)
    assert herd_gap < min(random_gaps)


def test_herding_k1_picks_closest_to_normalised_mean():
    x, y = _gaussian_classes()
    phi = x / np.linalg.norm(x, axis=1, keepdims=True)
    idx = herding(x, y, 1)
    for c in range(3):
        members = np.flatnonzero(y == c)
        dists = np.linalg.norm(phi[members] - phi[members].mean(axis=0), axis=1)
        assert idx[c] == members[np.argmin(dists)]


def test_k_equal_to_class_size_selects_whole_class():
    x, y = _gaussian_classes(n_per_class=(4, 6))
    for method in SELECTORS:
        idx = select_coreset(method, x, y, 4)
        assert sorted(idx[:4].tolist()) == sorted(np.flatnonzero(y == 0).tolist())


@pytest.mark.parametrize("method", sorted(SELECTORS))
def test_too_few_examples_names_class(method):
    x, y = _gaussian_classes(n_per_class=(10, 3, 10))
    with pytest.raises(ValueError, match="class 1 has 3 examples"):
        select_coreset(method, x, y, 5)


@pytest.mark.parametrize("k", [0, -2])
def test_bad_k(k):
    x, y = _gaussian_classes()
    with pytest.raises(ValueError, match=f"k={k}"):
        select_coreset("kcenters", x, y, k)


def test_unknown_method_names_the_config_key_and_the_selectors():
    x, y = _gaussian_classes()
    with pytest.raises(ValueError, match=r"^eval.baselines: unknown 'bogus'; choose from \['herding', 'kcenters', 'random'\]$"):
        select_coreset("bogus", x, y, 2)
    with pytest.raises(ValueError, match=r"eval.baselines: unknown \['random'\]"):  # unhashable: still a ValueError
        select_coreset(["random"], x, y, 2)


def test_select_coreset_dispatches_through_the_registry_only(monkeypatch):
    x, y = _gaussian_classes()
    calls = []

    def first_k(features, labels, k, seed=0):
        calls.append((len(features), k, seed))
        return np.arange(k, dtype=np.int64)

    monkeypatch.setitem(SELECTORS, "first", first_k)
    np.testing.assert_array_equal(select_coreset("first", x, y, 3, seed=5), [0, 1, 2])
    assert calls == [(len(x), 3, 5)]
    monkeypatch.setitem(SELECTORS, "herding", first_k)  # a registered name is looked up, never special-cased
    np.testing.assert_array_equal(select_coreset("herding", x, y, 2), [0, 1])
    assert sorted(SELECTORS) == ["first", "herding", "kcenters", "random"]


def test_feature_label_length_mismatch():
    x, y = _gaussian_classes()
    with pytest.raises(ValueError, match=f"^features has {len(x) - 1} rows but labels has {len(y)} entries$"):
        herding(x[:-1], y, 2)
    with pytest.raises(ValueError, match=f"^features has {len(x) - 1} rows but labels has {len(y)} entries$"):
        select_coreset("random", x[:-1], y, 2)
