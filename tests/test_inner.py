"""Unrolled inner loops agree with torch.optim when not differentiated through."""

import pytest
import torch
import torch.nn.functional as F

from condense.distill.inner import unrolled_train
from condense.models.heads import soft_cross_entropy


def problem():
    torch.manual_seed(0)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    weight = torch.randn(3, 5)
    return x, y, weight


@pytest.mark.parametrize(
    "name, make",
    [
        ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr)),
        ("momentum", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
        ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr)),
    ],
)
def test_matches_torch_optimizers(name, make):
    x, y, weight = problem()
    lrs = torch.tensor([0.1, 0.05, 0.02, 0.02])
    ours = unrolled_train(
        {"w": weight.clone().requires_grad_(True)}, lambda p: F.cross_entropy(x @ p["w"].T, y), lrs, name,
        create_graph=False,
    )["w"]
    reference = weight.clone().requires_grad_(True)
    optimizer = make([reference], 0.1)
    for lr in lrs:
        optimizer.param_groups[0]["lr"] = float(lr)
        optimizer.zero_grad()
        F.cross_entropy(x @ reference.T, y).backward()
        optimizer.step()
    torch.testing.assert_close(ours, reference.detach(), atol=1e-5, rtol=1e-4)


def test_head_and_encoder_learning_rates_are_separate():
    x, y, weight = problem()
    start = {"head.weight": weight.clone().requires_grad_(True), "encoder.w": weight.clone().requires_grad_(True)}
    trained = unrolled_train(start, lambda p: F.cross_entropy(x @ (p["head.weight"] + p["encoder.w"]).T, y),
                             torch.tensor([[0.1, 0.0]]), create_graph=False)
    assert not torch.equal(trained["head.weight"], weight)
    assert torch.equal(trained["encoder.w"], weight)


def test_soft_cross_entropy_equals_cross_entropy_for_one_hot():
    logits, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(y, 4).float()), F.cross_entropy(logits, y))


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="inner optimizer must be one of"):
        unrolled_train({"w": torch.zeros(1, requires_grad=True)}, lambda p: p["w"].sum(), torch.ones(1), "lbfgs")
