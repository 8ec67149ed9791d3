"""The real loss in micro-batches gives the whole batch's loss and hypergradients, in every mode; bf16 runs close."""

import pytest
import torch
import torch.nn.functional as F

from condense.distill.loop import RealData, outer_loss
from condense.models.attention import AttentionSpec, targets
from condense.models.encoders import encoder_param_names, encoder_params, init_head, load_encoder

NUM_CLASSES, LENGTH, STEPS, REAL_ROWS = 3, 6, 2, 7


@pytest.fixture(scope="module")
def encoder64(tiny_model_dirs):
    return load_encoder(str(tiny_model_dirs["bert"]), pooling="mean", dtype=torch.float64)


def problem(encoder, subset: str, attention: bool, dtype=torch.float64):
    """The learned tensors of a 3-example set and a function of them: the outer loss with a given micro-batch."""
    generator = torch.Generator().manual_seed(0)
    d = encoder.hidden_size
    table = encoder.token_embeddings.detach()
    inputs = table[torch.randint(1000, 2000, (3, LENGTH), generator=generator)]
    inputs = inputs + 0.01 * torch.randn(inputs.shape, generator=generator, dtype=dtype)
    mask = torch.tensor([[1] * LENGTH, [1] * LENGTH, [1] * (LENGTH - 2) + [0] * 2])
    learned = {"inputs": inputs, "label_logits": torch.randn(3, NUM_CLASSES, generator=generator, dtype=dtype),
               "log_lrs": torch.log(torch.tensor([[0.1, 1e-2]] * STEPS, dtype=dtype))[:, : 1 if subset == "head" else 2]}
    spec = None
    if attention:
        spec = AttentionSpec(rows="first_token", layers=(1,), heads=(0, 1), weight=1.0)
        learned["attention_logits"] = torch.randn(3, 1, 2, 1, LENGTH, generator=generator, dtype=dtype)
    # Real rows of different lengths, so that micro-batches trim their padding differently.
    ids = torch.randint(1000, 2000, (REAL_ROWS, 5), generator=generator)
    real_mask = torch.ones_like(ids)
    real_mask[::2, 3:] = 0
    features = torch.randn(REAL_ROWS, d, generator=generator, dtype=dtype)
    real = RealData(labels=torch.arange(REAL_ROWS) % NUM_CLASSES, features=features,
                    tokens={"input_ids": ids, "attention_mask": real_mask})
    head = init_head(d, NUM_CLASSES, torch.Generator().manual_seed(1), dtype)
    names = encoder_param_names(encoder.model, subset, 1)

    def loss(learned: dict, micro_batch=None, precision="fp32"):
        params = {**{k: v.clone().requires_grad_(True) for k, v in head.items()}, **encoder_params(encoder, names)}
        attention_term = None if spec is None else (spec, targets(learned["attention_logits"], mask), None)
        return outer_loss(encoder, params, learned["inputs"], mask, F.softmax(learned["label_logits"], -1),
                          learned["log_lrs"].exp(), real, "adam", attention=attention_term, micro_batch=micro_batch,
                          precision=precision)

    return learned, loss


def hypergradients(loss_fn, learned: dict, **options):
    learned = {name: tensor.clone().requires_grad_(True) for name, tensor in learned.items()}
    loss = loss_fn(learned, **options)
    return loss.detach(), dict(zip(learned, torch.autograd.grad(loss, list(learned.values()))))


@pytest.mark.parametrize("subset, attention", [("head", False), ("last_n_layers", False), ("all", False),
                                               ("all", True)])
@pytest.mark.parametrize("micro_batch", [1, 3])
def test_micro_batched_real_loss_has_the_whole_batch_loss_and_hypergradients(encoder64, subset, attention, micro_batch):
    learned, loss_fn = problem(encoder64, subset, attention)
    whole_loss, whole = hypergradients(loss_fn, learned)
    loss, chunked = hypergradients(loss_fn, learned, micro_batch=micro_batch)
    torch.testing.assert_close(loss, whole_loss, rtol=1e-12, atol=0)
    assert set(chunked) == set(whole)
    for name in whole:
        assert whole[name].abs().sum() > 0, f"{name} gets a gradient"
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-9, atol=1e-13, msg=name)


def test_micro_batched_real_loss_passes_gradcheck(encoder64):
    learned, loss_fn = problem(encoder64, "all", attention=False)
    names = list(learned)

    def function(*tensors):
        return loss_fn(dict(zip(names, tensors)), micro_batch=2)

    arguments = tuple(learned[name].clone().requires_grad_(True) for name in names)
    assert torch.autograd.gradcheck(function, arguments, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.parametrize("subset", ["head", "all"])
def test_bf16_loop_runs_and_stays_near_fp32(tiny_bert, subset):
    learned, loss_fn = problem(tiny_bert, subset, attention=subset == "all", dtype=torch.float32)
    fp32_loss, fp32 = hypergradients(loss_fn, learned)
    bf16_loss, bf16 = hypergradients(loss_fn, learned, precision="bf16")
    assert bf16_loss.dtype == torch.float32, "the loss is computed in fp32 under autocast"
    assert not torch.equal(bf16_loss, fp32_loss), "bf16 autocast changes the arithmetic"
    torch.testing.assert_close(bf16_loss, fp32_loss, rtol=0.05, atol=0.01)
    for name in fp32:
        assert bf16[name].dtype == fp32[name].dtype == torch.float32, name
        cosine = F.cosine_similarity(bf16[name].flatten(), fp32[name].flatten(), dim=0)
        assert cosine > 0.9, f"{name}: bf16 hypergradient points elsewhere (cosine {cosine:.3f})"
