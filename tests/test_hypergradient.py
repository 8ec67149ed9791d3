"""The outer loss's gradient w.r.t. embeddings, soft labels and learning rates, against finite differences."""

import pytest
import torch
import torch.nn.functional as F

from condense.distill.loop import RealData, outer_loss
from condense.models.encoders import encoder_param_names, encoder_params, init_head, load_encoder


@pytest.fixture(scope="module")
def encoder64(tiny_model_dirs):
    return load_encoder(str(tiny_model_dirs["bert"]), pooling="mean", dtype=torch.float64)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("subset", ["head", "last_n_layers", "all"])
def test_hypergradient_matches_finite_differences(encoder64, subset, optimizer):
    torch.manual_seed(0)
    num_classes, length, steps = 2, 5, 2
    d = encoder64.hidden_size
    table = encoder64.token_embeddings.detach()
    inputs = table[torch.randint(1000, 2000, (2, length))] + 0.01 * torch.randn(2, length, d, dtype=torch.float64)
    mask = torch.ones(2, length, dtype=torch.long)
    label_logits = torch.randn(2, num_classes, dtype=torch.float64)
    log_lrs = torch.full((steps, 1 if subset == "head" else 2), -1.0, dtype=torch.float64)
    real_ids = torch.randint(1000, 2000, (6, 4))
    real_labels = torch.tensor([0, 1, 0, 1, 0, 1])
    real = RealData(
        labels=real_labels,
        tokens={"input_ids": real_ids, "attention_mask": torch.ones_like(real_ids)},
        features=torch.randn(6, d, dtype=torch.float64),
    )
    head = init_head(d, num_classes, torch.Generator().manual_seed(1), torch.float64)
    names = encoder_param_names(encoder64.model, subset, 1)

    def loss(inputs, label_logits, log_lrs):
        params = {**{k: v.clone().requires_grad_(True) for k, v in head.items()}, **encoder_params(encoder64, names)}
        return outer_loss(
            encoder64, params, inputs, mask, F.softmax(label_logits, -1), log_lrs.exp(), real, optimizer
        )

    arguments = tuple(t.clone().requires_grad_(True) for t in (inputs, label_logits, log_lrs))
    assert torch.autograd.gradcheck(loss, arguments, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
    gradients = torch.autograd.grad(loss(*arguments), arguments)
    assert all(g.abs().sum() > 0 for g in gradients), "every learned quantity must receive a gradient"
