"""Attention labels: the KL term, its learned targets, the artefact that keeps them, and learners that use them."""

import pytest
import torch

from condense.artifact.distilled_set import DistilledSet
from condense.models.attention import AttentionSpec, aligned, attention_spec, kl_to_targets, targets
from condense.config.parsing import ConfigError, compose
from condense.eval.protocols import HeldOutData, learned_protocol
from condense.models.features import encode_tokens, tokenize
from condense.models.encoders import encode_attending, encoder_param_names, encoder_params, init_head
from condense.distill.objective import set_loss
from condense.distill.loop import RealData, distill
from condense.distill.start import initial_set
from condense.config.schema import DistillConfig

TEXTS = ["stocks market profit bank"] * 4 + ["football match goal team"] * 4
LABELS = torch.tensor([0] * 4 + [1] * 4)
NAMES = ["business", "sports"]


@pytest.fixture(scope="module")
def real(tiny_bert):
    tokens = tokenize(tiny_bert, TEXTS, 16)
    return RealData(labels=LABELS, features=encode_tokens(tiny_bert, tokens), tokens=tokens)


def distilled_with_attention(tiny_bert, real, rows="first_token", **overrides) -> DistilledSet:
    config = DistillConfig(params="all", inner_steps=2, outer_steps=4, real_batch_size=8, seq_len=8,
                           attention_labels=rows, lr_attention=0.5, **overrides)
    start = initial_set(tiny_bert, TEXTS, LABELS, NAMES, 1, config.seq_len, 0)
    return distill(tiny_bert, real, start, config, progress=False)


def test_spec_resolves_negative_indices_and_rejects_missing_ones(tiny_bert):
    spec = attention_spec(tiny_bert, DistillConfig(params="all", attention_labels="all_rows", attention_layers=[-1, 0]))
    assert spec == AttentionSpec(rows="all_rows", layers=(0, 1), heads=(0, 1), weight=1.0)
    assert attention_spec(tiny_bert, DistillConfig(params="all")) is None
    with pytest.raises(ValueError, match="attention_heads=\\[2\\].*2"):
        attention_spec(tiny_bert, DistillConfig(params="all", attention_labels="first_token", attention_heads=[2]))


def test_targets_are_distributions_over_real_keys_and_kl_vanishes_only_at_them():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    logits = torch.randn(2, 1, 2, 1, 4, generator=torch.Generator().manual_seed(0))
    probs = targets(logits, mask)
    # A softmax over each row's real keys only: padding gets no attention, and the real keys what a softmax over
    # them alone gives.
    assert probs[0, ..., 3].eq(0).all(), "padding gets no attention"
    torch.testing.assert_close(probs[0, ..., :3], logits[0, ..., :3].softmax(-1))
    torch.testing.assert_close(probs[1], logits[1].softmax(-1))
    assert kl_to_targets(probs, probs, mask).abs() < 1e-6
    other = targets(torch.zeros_like(logits), mask)
    assert kl_to_targets(other, probs, mask) > 1e-3
    # An example whose labels do not apply (weight 0) drops out of the mean.
    only_second = kl_to_targets(other, probs, mask, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(only_second, kl_to_targets(other[1:], probs[1:], mask[1:]))


def test_the_attention_term_changes_the_inner_gradient(tiny_bert):
    tokens = tokenize(tiny_bert, TEXTS[:2], 8)
    params = {**init_head(16, 2, torch.Generator().manual_seed(0)), **encoder_params(tiny_bert, encoder_param_names(tiny_bert.model, "all"))}
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    soft = torch.eye(2)
    spec = AttentionSpec("first_token", (1,), (0, 1), 1.0)
    _, maps = encode_attending(tiny_bert, tokens["attention_mask"], input_ids=tokens["input_ids"])
    own = maps[1][:, :, :1].unsqueeze(1).detach()
    plain = set_loss(tiny_bert, tokens["attention_mask"], params, soft, input_ids=tokens["input_ids"])
    at_own = set_loss(tiny_bert, tokens["attention_mask"], params, soft, (spec, own, None), input_ids=tokens["input_ids"])
    torch.testing.assert_close(plain, at_own, atol=1e-6, rtol=0), "the model's own attention costs nothing"
    peaked = torch.zeros_like(own)
    peaked[..., 0] = 10.0  # a random tiny model attends almost uniformly: ask for the first token only
    away = set_loss(tiny_bert, tokens["attention_mask"], params, soft, (spec, targets(peaked, tokens["attention_mask"]), None),
                    input_ids=tokens["input_ids"])
    assert away > plain + 1e-4
    weight = params["encoder.layer.0.attention.self.query.weight"]
    g_plain, = torch.autograd.grad(plain, weight)
    g_away, = torch.autograd.grad(away, weight)
    assert not torch.allclose(g_plain, g_away)


@pytest.mark.parametrize("rows", ["first_token", "all_rows"])
def test_distillation_learns_attention_labels_and_the_artefact_keeps_them(tiny_bert, real, rows, tmp_path):
    result = distilled_with_attention(tiny_bert, real, rows)
    width = 1 if rows == "first_token" else 8
    assert result.attention_labels.shape == (2, 1, 2, width, 8)
    start = initial_set(tiny_bert, TEXTS, LABELS, NAMES, 1, 8, 0)
    _, maps = encode_attending(tiny_bert, start.attention_mask, input_ids=start.token_ids)
    pretrained = maps[1][:, :, :width].unsqueeze(1)
    assert (result.attention_labels - pretrained).abs().max() > 1e-3, "lr_attention=0.5 moves the targets"
    assert result.inner.attention == AttentionSpec(rows, (1,), (0, 1), 1.0)

    result.meta["task"] = "tiny"
    loaded = DistilledSet.load(result.save(tmp_path / "set"))
    torch.testing.assert_close(loaded.attention_labels, result.attention_labels)
    assert loaded.inner.attention == result.inner.attention
    train = loaded.training_set("embedding")
    assert train.attention_labels is not None and train.attention_weights is None


def test_learned_protocol_trains_with_the_attention_term(tiny_bert, real, monkeypatch):
    import condense.eval.protocols

    result = distilled_with_attention(tiny_bert, real)
    seen = []

    def spy(*args, **kwargs):
        seen.append(args[4])
        return set_loss(*args, **kwargs)

    monkeypatch.setattr(condense.eval.protocols, "set_loss", spy)
    tokens = tokenize(tiny_bert, TEXTS, 16)
    test = HeldOutData(labels=LABELS, tokens=tokens, token_labels=LABELS)
    learned_protocol(tiny_bert, result.training_set("embedding"), test, result.inner, n_inits=2, seed=0)
    assert len(seen) == 2 * result.inner.steps
    spec, labels, weights = seen[0]
    assert spec == result.inner.attention and weights is None
    torch.testing.assert_close(labels, result.attention_labels)
    text = result.training_set("text", tiny_bert.tokenizer, 8)
    seen.clear()
    learned_protocol(tiny_bert, text, test, result.inner, n_inits=1, seed=0)
    assert seen[0][2] is not None and seen[0][2].shape == (2,), "the text form weighs rows by whether tokens kept"


def test_text_form_keeps_labels_only_where_tokens_are_unchanged():
    labels = torch.rand(2, 1, 1, 1, 5)
    trained_ids = torch.tensor([[101, 7, 8, 102, 0], [101, 9, 10, 11, 102]])
    trained_mask = (trained_ids != 0).long()
    ids = torch.tensor([[101, 7, 8, 102], [101, 12, 11, 102]])  # the second row re-tokenised differently
    mask = torch.ones_like(ids)
    out, weights = aligned(labels, trained_ids, trained_mask, ids, mask)
    assert out.shape == (2, 1, 1, 1, 4) and weights.tolist() == [1.0, 0.0]
    torch.testing.assert_close(out[0, ..., :4], labels[0, ..., :4])


def test_attention_labels_need_an_encoder_that_trains():
    with pytest.raises(ConfigError, match="attention_labels='first_token' needs an inner loop that trains encoder"):
        compose("config", ["distill.attention_labels=first_token"])
    job = compose("config", ["distill=all", "distill.attention_labels=first_token"])
    assert job.distill.attention_labels == "first_token"


def test_a_whole_run_with_attention_labels_and_checkpointed_unrolls(tiny_model_dirs, tiny_task_dir, tmp_path):
    from condense.jobs.distill_task import distill_task

    job = compose("config", [
        "task=local", f"task.path={tiny_task_dir}", f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "distill=all",
        "distill.outer_steps=3", "distill.inner_steps=2", "distill.bptt=checkpoint", "distill.attention_labels=all_rows",
        "distill.seq_len=8", "distill.real_batch_size=8", "device=cpu", "threads=1", f"out={tmp_path / 'run'}",
    ])
    distilled = distill_task(job)
    loaded = DistilledSet.load(tmp_path / "run")
    assert loaded.attention_labels.shape == (3, 1, 2, 8, 8)  # 3 classes x 1 per class, last layer, both heads
    assert loaded.meta["inner"]["attention"] == {"rows": "all_rows", "layers": [1], "heads": [0, 1], "weight": 1.0}
    assert set(loaded.metrics["learned"]) == {"distilled", "decoded", "random", "kcenters", "herding", "full"}
    torch.testing.assert_close(loaded.attention_labels, distilled.attention_labels)
