"""Checkpointed BPTT (``unrolled_train(checkpoint=True)``) gives the plain unroll's loss and hypergradients."""

import pytest
import torch
import torch.nn.functional as F

from condense.distill.inner import unrolled_train
from condense.models.heads import soft_cross_entropy
from condense.models.encoders import encoder_param_names, encoder_params, init_head, load_encoder
from condense.distill.loop import RealData, outer_loss

OPTIMIZERS = ["sgd", "momentum", "adam"]
STEPS = 3


def assert_same_hypergradients(loss, wrt):
    """``loss(checkpoint)`` is an outer loss of the tensors ``wrt``: equal values, equal non-zero gradients."""
    plain, checkpointed = loss(False), loss(True)
    assert torch.equal(plain, checkpointed)
    for expected, got in zip(torch.autograd.grad(plain, wrt), torch.autograd.grad(checkpointed, wrt)):
        assert expected.abs().sum() > 0, "every learned quantity must receive a gradient"
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def toy_problem():
    """A two-layer net trained on synthetic inputs with soft labels, scored on a real batch."""
    generator = torch.Generator().manual_seed(0)
    kw = {"generator": generator, "dtype": torch.float64}
    inputs = torch.randn(6, 4, **kw).requires_grad_(True)
    label_logits = torch.randn(6, 3, **kw).requires_grad_(True)
    log_lrs = torch.full((STEPS, 2), -1.5, dtype=torch.float64).requires_grad_(True)
    real_x, real_y = torch.randn(10, 4, **kw), torch.randint(0, 3, (10,), generator=generator)
    start = {"encoder.w": torch.randn(5, 4, **kw), "head.weight": torch.randn(3, 5, **kw), "head.bias": torch.randn(3, **kw)}

    def forward(p, x):
        return F.linear(torch.tanh(x @ p["encoder.w"].T), p["head.weight"], p["head.bias"])

    def loss(optimizer, checkpoint):
        targets = F.softmax(label_logits, -1)
        params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
        trained = unrolled_train(params, lambda p: soft_cross_entropy(forward(p, inputs), targets), log_lrs.exp(),
                                 optimizer, checkpoint=checkpoint)
        return F.cross_entropy(forward(trained, real_x), real_y)

    return loss, (inputs, label_logits, log_lrs)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_toy_hypergradients_match(optimizer):
    loss, wrt = toy_problem()
    assert_same_hypergradients(lambda checkpoint: loss(optimizer, checkpoint), wrt)


def test_checkpointed_steps_rerun_in_backward_and_save_less():
    """The saving is real: the steps rerun during the outer backward, and far fewer bytes are saved for it."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 32, generator=generator, requires_grad=True)
    targets = F.softmax(torch.randn(256, 4, generator=generator), -1)
    start = {"w": torch.randn(64, 32, generator=generator), "head.weight": torch.randn(4, 64, generator=generator)}
    calls = []

    def inner_loss(p):
        calls.append(1)
        return soft_cross_entropy(torch.tanh(inputs @ p["w"].T) @ p["head.weight"].T, targets)

    def run(checkpoint):
        saved = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            trained = unrolled_train(params, inner_loss, torch.full((8,), 0.1), checkpoint=checkpoint)
            loss = inner_loss(trained)
        calls.clear()
        loss.backward()
        return sum(saved.values()), len(calls), inputs.grad

    full_bytes, full_reruns, _ = run(False)
    checkpoint_bytes, checkpoint_reruns, _ = run(True)
    assert (full_reruns, checkpoint_reruns) == (0, 7), "every step but the last, whose graph backward needs at once"
    assert checkpoint_bytes < full_bytes / 4


@pytest.fixture(scope="module")
def encoder64(tiny_model_dirs):
    return load_encoder(str(tiny_model_dirs["bert"]), pooling="mean", dtype=torch.float64)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_outer_loss_hypergradients_match_with_every_weight_trained(encoder64, optimizer):
    """The real path: outer_loss in ``all`` mode, a tiny random BERT trained on embeddings, scored on tokens."""
    torch.manual_seed(0)
    num_classes, length, d = 3, 6, encoder64.hidden_size
    table = encoder64.token_embeddings.detach()
    inputs = (table[torch.randint(1000, 2000, (3, length))] + 0.01 * torch.randn(3, length, d, dtype=torch.float64))
    inputs.requires_grad_(True)
    mask = torch.tensor([[1] * length, [1] * length, [1] * (length - 2) + [0] * 2])
    label_logits = torch.randn(3, num_classes, dtype=torch.float64, requires_grad=True)
    log_lrs = torch.log(torch.tensor([[0.1, 1e-2]] * STEPS, dtype=torch.float64)).requires_grad_(True)
    ids = torch.randint(1000, 2000, (8, 5))
    real = RealData(labels=torch.arange(8) % num_classes, tokens={"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    head = init_head(d, num_classes, torch.Generator().manual_seed(1), torch.float64)
    names = encoder_param_names(encoder64.model, "all")

    def loss(checkpoint):
        params = {**{k: v.clone().requires_grad_(True) for k, v in head.items()}, **encoder_params(encoder64, names)}
        return outer_loss(encoder64, params, inputs, mask, F.softmax(label_logits, -1), log_lrs.exp(), real,
                          optimizer, checkpoint=checkpoint)

    assert_same_hypergradients(loss, (inputs, label_logits, log_lrs))
