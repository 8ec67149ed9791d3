"""The synthetic set and the outer loop on a tiny model: initialisation, what is learned and what is not."""

import pytest
import torch

from condense.distill.loop import RealData, distill
from condense.distill.start import initial_set, real_examples_set
from condense.config.schema import DistillConfig
from condense.models.features import encode_tokens, tokenize

TEXTS = ["stocks market profit bank"] * 4 + ["football match goal team"] * 4
LABELS = torch.tensor([0] * 4 + [1] * 4)
NAMES = ["business", "sports"]


@pytest.fixture(scope="module")
def real(tiny_bert):
    tokens = tokenize(tiny_bert, TEXTS, 16)
    return RealData(labels=LABELS, features=encode_tokens(tiny_bert, tokens), tokens=tokens)


def test_initial_set_fills_each_example_with_its_class_tokens(tiny_bert):
    start = initial_set(tiny_bert, TEXTS, LABELS, NAMES, ipc=2, seq_len=10, seed=0)
    assert start.token_ids.shape == (4, 10) and start.labels.tolist() == [0, 0, 1, 1]
    assert bool(start.attention_mask.all()), "texts are concatenated until the sequence is full"
    words = tiny_bert.tokenizer.batch_decode(start.token_ids, skip_special_tokens=True)
    assert set(words[0].split()) <= set(TEXTS[0].split()) and set(words[3].split()) <= set(TEXTS[4].split())
    assert start.token_ids[:, 0].eq(tiny_bert.tokenizer.cls_token_id).all()
    assert start.token_ids[:, -1].eq(tiny_bert.tokenizer.sep_token_id).all()
    with pytest.raises(ValueError, match="leaves no room"):
        initial_set(tiny_bert, TEXTS, LABELS, NAMES, 1, seq_len=2, seed=0)


def run(tiny_bert, real, start=None, **overrides):
    config = DistillConfig(**{"outer_steps": 5, "real_batch_size": 8, "seq_len": 8, "lr_inputs": 0.5, **overrides})
    start = start or initial_set(tiny_bert, TEXTS, LABELS, NAMES, 1, config.seq_len, 0)
    return start, distill(tiny_bert, real, start, config, progress=False)


def test_straight_through_trains_token_embeddings_and_learns_labels_and_lrs(tiny_bert, real):
    start, result = run(tiny_bert, real)
    table = tiny_bert.token_embeddings.detach()
    torch.testing.assert_close(result.embeddings, table[result.token_ids])
    assert not torch.equal(result.token_ids, start.token_ids), "tokens move under lr_inputs=0.5"
    assert torch.equal(result.token_ids[:, [0, -1]], start.token_ids[:, [0, -1]]), "special tokens stay"
    assert result.inner_lrs.shape == (10,) and not torch.allclose(result.inner_lrs, torch.full((10,), 0.1))
    assert not torch.allclose(result.soft_labels.max(1).values, torch.full((2,), 0.9))
    assert len(result.meta["outer_loss"]) == 5 and result.progress.outer_step == 5


def test_hard_labels_and_fixed_lrs_stay_fixed(tiny_bert, real):
    _, result = run(tiny_bert, real, labels="hard", learn_lrs=False)
    assert torch.equal(result.soft_labels, torch.eye(2))
    torch.testing.assert_close(result.inner_lrs, torch.full((10,), 0.1))


def test_label_only_distillation_keeps_the_real_inputs(tiny_bert, real):
    start = real_examples_set(tiny_bert, [TEXTS[0], TEXTS[4]], torch.tensor([0, 1]), NAMES, 16)
    _, result = run(tiny_bert, real, start=start, learn_inputs=False)
    torch.testing.assert_close(result.embeddings, tiny_bert.token_embeddings.detach()[start.token_ids])
    assert torch.equal(result.token_ids, start.token_ids)
    assert not torch.allclose(result.soft_labels.max(1).values, torch.full((2,), 0.9))


def test_noise_init_and_continuous_embeddings(tiny_bert, real):
    start, result = run(tiny_bert, real, init="noise", projection="none", distance="l2")
    table = tiny_bert.token_embeddings.detach()
    content = result.embeddings[:, 1:-1]
    assert not torch.allclose(content, table[result.token_ids][:, 1:-1]), "continuous, not snapped"
    torch.testing.assert_close(result.embeddings[:, 0], table[start.token_ids[:, 0]])


def test_encoder_modes_learn_two_learning_rates_per_step(tiny_bert, real):
    _, result = run(tiny_bert, real, params="last_n_layers", inner_steps=2)
    assert result.inner_lrs.shape == (2, 2)


def test_checkpoints_are_offered_during_the_run(tiny_bert, real):
    seen = []
    config = DistillConfig(outer_steps=5, checkpoint_every=2, real_batch_size=8, seq_len=8)
    start = initial_set(tiny_bert, TEXTS, LABELS, NAMES, 1, 8, 0)
    distill(tiny_bert, real, start, config, on_checkpoint=lambda state: seen.append(state.step), progress=False)
    assert seen == [2, 4]
    seen.clear()  # every step once a checkpoint is always due by time; never after the last step (the artefact is)
    distill(tiny_bert, real, start, config, on_checkpoint=lambda state: seen.append(state.step), progress=False,
            checkpoint_seconds=0.0)
    assert seen == [1, 2, 3, 4]
