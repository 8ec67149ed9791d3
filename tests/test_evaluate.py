"""Evaluation protocols: fresh heads, the learned inner loop, fine-tuning, the linear probe."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from condense.report.tables import metrics_table
from condense.artifact.distilled_set import InnerProtocol, TrainingSet
from condense.eval import protocols as evaluate
from condense.eval.protocols import (
    finetune,
    FinetuneRecipe,
    HeldOutData,
    finetune_protocol,
    learned_protocol,
    linear_probe,
    shuffled_batches,
    summarize,
)
from condense.models.features import encode_tokens, tokenize
from condense.models.heads import head_accuracy
from condense.models.encoders import init_head


def separable_features(n=200, d=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    features = torch.randn(n, d, generator=generator)
    features[:, 0] += 4 * (2 * labels - 1)
    return features, labels


def test_linear_probe_separates_separable_data():
    features, labels = separable_features()
    test_features, test_labels = separable_features(seed=1)
    result = linear_probe(features, labels, HeldOutData(labels=test_labels, features=test_features), n_inits=2, steps=200)
    assert result["mean"] > 0.97 and result["n"] == 2


def test_learned_protocol_trains_fresh_heads_on_the_set(tiny_bert):
    texts = ["stocks market profit bank", "football match goal team"] * 4
    tokens = tokenize(tiny_bert, texts, 16)
    labels = torch.tensor([0, 1] * 4)
    features = encode_tokens(tiny_bert, tokens)
    test = HeldOutData(labels=labels, features=features, tokens=tokens, token_labels=labels)
    train = TrainingSet(tokens["attention_mask"][:2], F.one_hot(labels[:2], 2).float(), input_ids=tokens["input_ids"][:2])
    trained = learned_protocol(tiny_bert, train, test, InnerProtocol(lrs=torch.full((30,), 2.0)), n_inits=3)
    untrained = learned_protocol(tiny_bert, train, test, InnerProtocol(lrs=torch.zeros(1)), n_inits=3)
    assert trained["mean"] == 1.0, "two distinct texts repeated: a trained head must fit them"
    assert trained["n"] == untrained["n"] == 3
    # A zero learning rate leaves each fresh head as drawn: the protocol scores the heads of seeds 0, 1, 2.
    drawn = [head_accuracy(init_head(16, 2, torch.Generator().manual_seed(s)), features, labels) for s in range(3)]
    assert untrained == summarize(drawn)
    everything = InnerProtocol(params="all", lrs=torch.full((5, 2), 1.0))
    encoder_trained = learned_protocol(tiny_bert, train, test, everything, n_inits=2)
    assert encoder_trained == learned_protocol(tiny_bert, train, test, everything, n_inits=2)  # seeded
    assert encoder_trained["n"] == 2 and encoder_trained != trained


def test_finetune_protocol_runs_on_embeddings_and_is_seeded(tiny_bert):
    tokens = tokenize(tiny_bert, ["a b c", "d e f", "g h i"], 8)
    labels = torch.tensor([0, 1, 0])
    test = HeldOutData(labels=labels, tokens=tokens, token_labels=labels)
    train = TrainingSet(tokens["attention_mask"], F.one_hot(labels, 2).float(),
                        inputs_embeds=tiny_bert.token_embeddings[tokens["input_ids"]].detach())
    recipe = FinetuneRecipe(min_steps=3, epochs=1)
    first = finetune_protocol(tiny_bert, train, test, recipe, n_inits=2, seed=5)
    again = finetune_protocol(tiny_bert, train, test, recipe, n_inits=2, seed=5)
    assert first == again


def test_summarize():
    assert summarize([0.5, 0.7]) == pytest.approx({"mean": 0.6, "std": 0.1414213, "n": 2}, rel=1e-5)
    assert summarize([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}


def test_finetune_covers_epochs_with_a_partial_last_batch(tiny_bert, monkeypatch):
    texts = [f"word{i} other{i % 3}" for i in range(20)]
    tokens = tokenize(tiny_bert, texts, 8)
    labels = torch.arange(20) % 2
    train = TrainingSet(tokens["attention_mask"], F.one_hot(labels, 2).float(), input_ids=tokens["input_ids"])
    seen, original = [], evaluate.classify

    def counting_classify(encoder, mask, params, **inputs):
        seen.append(inputs["input_ids"][:, 0].tolist())  # the [CLS] column: one entry per example of the batch
        return original(encoder, mask, params, **inputs)

    monkeypatch.setattr(evaluate, "classify", counting_classify)
    finetune(tiny_bert, train, FinetuneRecipe(batch_size=16, epochs=3, min_steps=1, group_by_length=False), torch.Generator().manual_seed(0))
    # 3 epochs of 20 examples in batches of 16: a full batch and the 4 left over, three times, every example per epoch.
    assert [len(batch) for batch in seen] == [16, 4, 16, 4, 16, 4]
    seen.clear()
    finetune(tiny_bert, train, FinetuneRecipe(batch_size=16, epochs=1, min_steps=5, group_by_length=False), torch.Generator().manual_seed(0))
    assert [len(batch) for batch in seen] == [16, 4, 16, 4, 16], "min_steps tops up a short recipe"


def test_shuffled_batches_visit_every_example_once_per_epoch():
    batches = list(itertools.islice(shuffled_batches(20, 16, torch.Generator().manual_seed(0)), 4))
    assert [len(b) for b in batches] == [16, 4, 16, 4]
    assert sorted(torch.cat(batches[:2]).tolist()) == list(range(20))


def test_the_printed_table_says_whether_the_fine_tuning_reference_is_the_entire_split_or_a_sample():
    stat = {"mean": 0.8, "std": 0.01, "n": 2}
    whole = {"finetune": {"decoded": stat, "full": {**stat, "train_examples": 8530, "train_rows": 8530}}, "learned": {}}
    assert "full (fine-tuning): the recipe on all 8,530 training rows" in metrics_table(whole)
    sample = {"finetune": {"full": {**stat, "train_examples": 1000, "train_rows": 8530}}, "learned": {}}
    assert "a sample of 1,000 of the 8,530 training rows (eval.full_finetune_examples), not the entire split" in metrics_table(sample)
