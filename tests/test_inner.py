"""Unrolled inner loops agree with torch.optim when not differentiated through."""

import pytest
import torch
import torch.nn.functional as F

from condense.distill.inner import lr_factors, unrolled_train
from condense.distill.loop import inner_batches
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


def test_adamw_with_a_linear_schedule_matches_torch_adamw():
    x, y, weight = problem()
    steps, decay = 6, 0.01
    lrs = 0.1 * torch.tensor(lr_factors("linear", 0.34, steps))
    ours = unrolled_train({"w": weight.clone().requires_grad_(True)}, lambda p: F.cross_entropy(x @ p["w"].T, y), lrs,
                          "adamw", weight_decay=decay, create_graph=False)["w"]
    reference = weight.clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([reference], lr=0.1, weight_decay=decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factors("linear", 0.34, steps)[step] if step < steps else 0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(x @ reference.T, y).backward()
        optimizer.step()
        schedule.step()
    torch.testing.assert_close(ours, reference.detach(), atol=1e-5, rtol=1e-4)


def test_adamw_hypergradient_is_preconditioned_sgd_along_adamw_path():
    # Exact Adam's first step is sign(g): no gradient reaches the data. AdamW's hypergradient treats sqrt(v) as a
    # constant, so after one step it is SGD's scaled by 1 / (|g| + eps) elementwise.
    torch.manual_seed(1)
    x = torch.randn(4, 3, requires_grad=True)
    w0 = torch.randn(2, 3)
    y = torch.tensor([0, 1, 0, 1])

    def after_one_step(optimizer):
        w = unrolled_train({"w": w0.clone().requires_grad_(True)}, lambda p: F.cross_entropy(x @ p["w"].T, y),
                           torch.tensor([0.5]), optimizer)["w"]
        return torch.autograd.grad((w ** 2).sum(), x)[0]

    assert after_one_step("adam").abs().max() < 1e-6, "exact Adam: the normalised first step has no data gradient"
    hyper = after_one_step("adamw")
    assert hyper.abs().max() > 1e-3
    # The same derivative by hand: w1 = w0 - lr * g(x) / c, with c = |g| + eps at this x held constant.
    w = w0.clone().requires_grad_(True)
    x_ = x.detach().clone().requires_grad_(True)
    g_x = torch.autograd.grad(F.cross_entropy(x_ @ w.T, y), w, create_graph=True)[0]
    by_hand = torch.autograd.grad(((w0 - 0.5 * g_x / (g_x.detach().abs() + 1e-8)) ** 2).sum(), x_)[0]
    torch.testing.assert_close(hyper, by_hand)


def test_mini_batches_train_each_step_on_its_own_rows():
    x, y, weight = problem()
    seen = []

    def loss(p, rows):
        seen.append(rows.tolist())
        return F.cross_entropy(x[rows] @ p["w"].T, y[rows])

    batches = inner_batches(8, 3, 4, torch.Generator().manual_seed(0))
    unrolled_train({"w": weight.clone().requires_grad_(True)}, loss, torch.full((4,), 0.1), batches=batches, create_graph=False)
    assert seen == [b.tolist() for b in batches]
    assert sorted(sum(seen[:3], [])) == list(range(8)), "the first epoch visits every row once"
    assert [len(b) for b in seen] == [3, 3, 2, 3]
    assert inner_batches(8, 8, 4, torch.Generator()) is None and inner_batches(8, None, 4, torch.Generator()) is None
    with pytest.raises(ValueError, match="one mini-batch per inner step"):
        unrolled_train({"w": weight.clone().requires_grad_(True)}, loss, torch.full((3,), 0.1), batches=batches)


def test_linear_schedule_warms_up_then_decays():
    factors = lr_factors("linear", 0.1, 30)
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[-1] == pytest.approx(1 / 27)
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
    assert lr_factors("constant", 0.1, 3) == [1.0, 1.0, 1.0]
