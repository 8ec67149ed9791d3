"""Nearest-token decoding, the straight-through projection, and the text round trip."""

import pytest
import torch

from condense.distill.decode import decode_texts, nearest_tokens, project, round_trip_vocabulary
from condense.models.encoders import load_encoder


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_token_embeddings_decode_to_themselves(minilm, distance):
    ids = minilm.tokenizer("stocks fell sharply as oil prices rose", add_special_tokens=False, return_tensors="pt")["input_ids"]
    table = minilm.token_embeddings.detach()
    noisy = table[ids] + 1e-3 * torch.randn(*ids.shape, table.shape[1])
    assert torch.equal(nearest_tokens(noisy, table, round_trip_vocabulary(minilm), distance), ids)
    assert decode_texts(minilm, ids, torch.ones_like(ids)) == ["stocks fell sharply as oil prices rose"]


def test_l2_and_cosine_differ_where_norms_differ():
    table = torch.tensor([[1.0, 0.0], [10.0, 1.0]])
    point = torch.tensor([[2.0, 0.3]])
    assert nearest_tokens(point, table, distance="l2").item() == 0
    assert nearest_tokens(point, table, distance="cosine").item() == 1
    with pytest.raises(ValueError, match="distance must be one of"):
        nearest_tokens(point, table, distance="dot")


def test_round_trip_vocabulary_excludes_special_and_subword_tokens(minilm):
    vocabulary = set(round_trip_vocabulary(minilm).tolist())
    tokenizer = minilm.tokenizer
    assert not vocabulary & set(tokenizer.all_special_ids)
    assert tokenizer.convert_tokens_to_ids("##ing") not in vocabulary
    assert tokenizer.convert_tokens_to_ids("market") in vocabulary
    sample = torch.tensor(sorted(vocabulary))[torch.randperm(len(vocabulary))[:200]]
    text = decode_texts(minilm, sample.unsqueeze(0), torch.ones(1, len(sample), dtype=torch.long))[0]
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == sample.tolist()


def test_projection_is_straight_through():
    table = torch.eye(3)
    point = torch.tensor([[0.9, 0.2, 0.0]], requires_grad=True)
    snapped, ids = project(point, table)
    assert ids.tolist() == [0] and torch.equal(snapped.detach(), table[[0]])
    (snapped * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert point.grad.tolist() == [[1.0, 2.0, 3.0]]
