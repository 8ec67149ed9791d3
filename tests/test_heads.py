"""The one head trainer: the full-data probe number for number, soft labels as the transfer experiment trains them,
and the accuracy of a head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from condense.eval.protocols import probe_head
from condense.models.heads import fresh_head, head_accuracy, head_optimizer, train_head
from condense.models.heads import soft_cross_entropy
from condense.models.encoders import init_head, linear_head


def features_and_labels(seed: int = 0, n: int = 40, dims: int = 6, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    features = torch.randn(n, dims, generator=generator) + 2.0 * F.one_hot(labels, dims).float()
    return features, labels


@pytest.mark.parametrize("seed", [0, 7])
def test_train_head_is_the_probe_head_bit_for_bit(seed):
    features, labels = features_and_labels()
    expected = probe_head(features, labels, seed, steps=25, lr=0.01, weight_decay=1e-4)
    trained = train_head(features, labels, seed=seed, steps=25, lr=0.01, weight_decay=1e-4)
    assert set(trained) == {"head.weight", "head.bias"}
    for name in expected:
        assert torch.equal(trained[name], expected[name])
        assert not trained[name].requires_grad


def test_train_head_on_soft_labels_is_full_batch_adam_on_the_soft_cross_entropy():
    """The loop the transfer experiment's converged head ran before it called train_head."""
    features, labels = features_and_labels(seed=1)
    soft = torch.softmax(torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(2)), -1)
    head = {k: v.requires_grad_(True) for k, v in init_head(features.shape[1], 3, torch.Generator().manual_seed(4)).items()}
    optimizer = torch.optim.Adam(list(head.values()), lr=1e-2, weight_decay=1e-4)
    for _ in range(30):
        loss = soft_cross_entropy(linear_head(features, head), soft)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = train_head(features, soft, seed=4, steps=30, lr=1e-2, weight_decay=1e-4, optimizer="adam")
    assert trained["head.weight"].shape == (3, features.shape[1])
    for name in head:
        assert torch.equal(trained[name], head[name].detach())


def test_soft_and_hard_labels_train_different_heads_and_the_optimiser_matters():
    features, labels = features_and_labels()
    hard = train_head(features, labels, seed=0, steps=10, lr=0.05, weight_decay=0.0)
    one_hot = train_head(features, F.one_hot(labels, 3).float(), seed=0, steps=10, lr=0.05, weight_decay=0.0)
    adam = train_head(features, labels, seed=0, steps=10, lr=0.05, weight_decay=0.0, optimizer="adam")
    # One-hot rows are the same loss as integer labels, up to float rounding.
    torch.testing.assert_close(one_hot["head.weight"], hard["head.weight"], atol=1e-5, rtol=1e-5)
    # With no weight decay Adam and AdamW are the same update; with it they are not.
    torch.testing.assert_close(adam["head.weight"], hard["head.weight"])
    decayed = train_head(features, labels, seed=0, steps=10, lr=0.05, weight_decay=0.5)
    decayed_adam = train_head(features, labels, seed=0, steps=10, lr=0.05, weight_decay=0.5, optimizer="adam")
    assert not torch.allclose(decayed["head.weight"], decayed_adam["head.weight"])


def test_a_trained_head_separates_separable_features_and_its_seed_sets_its_start():
    features, labels = features_and_labels()
    untrained = train_head(features, labels, seed=3, steps=0, lr=0.01, weight_decay=0.0)
    drawn = init_head(features.shape[1], 3, torch.Generator().manual_seed(3))
    assert all(torch.equal(untrained[name], drawn[name]) for name in drawn)
    trained = train_head(features, labels, seed=3, steps=300, lr=0.05, weight_decay=1e-4)
    assert head_accuracy(trained, features, labels) == 1.0


def test_head_accuracy_is_the_share_of_rows_whose_top_logit_is_the_label():
    head = {"head.weight": torch.eye(3), "head.bias": torch.zeros(3)}
    features = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [5.0, 0, 0]])
    assert head_accuracy(head, features, torch.tensor([0, 1, 2, 2])) == 0.75
    assert head_accuracy(head, features, torch.tensor([1, 0, 0, 1])) == 0.0


def test_fresh_heads_follow_the_features_device_and_unknown_optimisers_are_refused():
    features, labels = features_and_labels()
    head = fresh_head(6, 3, torch.Generator().manual_seed(0), device=features.device)
    assert all(t.device == features.device and t.requires_grad and t.is_leaf for t in head.values())
    with pytest.raises(ValueError, match="adamw"):
        head_optimizer(head, "sgd", lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="adamw"):
        train_head(features, labels, seed=0, steps=1, lr=0.1, weight_decay=0.0, optimizer="lbfgs")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_head_starts_where_it_starts_on_the_cpu():
    features, labels = features_and_labels()
    cpu = train_head(features, labels, seed=5, steps=0, lr=0.01, weight_decay=0.0)
    gpu = train_head(features.cuda(), labels.cuda(), seed=5, steps=20, lr=0.01, weight_decay=1e-4)
    assert all(t.is_cuda for t in gpu.values())
    start = train_head(features.cuda(), labels.cuda(), seed=5, steps=0, lr=0.01, weight_decay=0.0)
    assert all(torch.equal(start[name].cpu(), cpu[name]) for name in cpu)
    reference = probe_head(features, labels, 5, steps=20, lr=0.01, weight_decay=1e-4)
    torch.testing.assert_close(gpu["head.weight"].cpu(), reference["head.weight"], atol=1e-5, rtol=1e-4)
