"""Tokenising and cached frozen-encoder features."""

import pytest
import torch

from condense.cache import cache_dir, digest
from condense.models.features import cached_tensors, encode_tokens, length_batches, text_features, tokenize


def test_features_are_cached_per_input(tiny_bert):
    texts = ["stocks fell", "a long match went to extra time", "chips"]
    first = text_features(tiny_bert, texts, 16)
    files = list((cache_dir() / "features").glob("*.safetensors"))
    assert torch.equal(text_features(tiny_bert, texts, 16), first)
    assert list((cache_dir() / "features").glob("*.safetensors")) == files, "a second call reads the cache"
    assert not torch.equal(text_features(tiny_bert, texts[::-1], 16), first)
    assert len(list((cache_dir() / "features").glob("*.safetensors"))) == len(files) + 1


def test_length_bucketed_encoding_matches_one_batch(tiny_bert):
    texts = ["a", "a much longer text with many more tokens in it", "medium length text"]
    tokens = tokenize(tiny_bert, texts, 32)
    with torch.no_grad():
        whole = encode_tokens(tiny_bert, tokens, batch_size=3)
        bucketed = encode_tokens(tiny_bert, tokens, batch_size=1)
    torch.testing.assert_close(bucketed, whole, atol=1e-5, rtol=1e-4)
    assert [len(b) for b in length_batches(tokens["attention_mask"], 2)] == [2, 1]


def test_tokenize_truncates_to_max_length(tiny_bert):
    tokens = tokenize(tiny_bert, ["word " * 100], 10)
    assert tokens["input_ids"].shape == (1, 10)


def test_an_interrupted_computation_leaves_no_cache_entry():
    key = ("an interrupted entry",)

    def killed():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_tensors(key, killed, "an entry", folder="interrupted")
    folder = cache_dir() / "interrupted"
    assert [p.suffix for p in folder.iterdir()] == [".lock"]  # only the lock that parallel writers share: no entry
    first = cached_tensors(key, lambda: {"x": torch.arange(3)}, "an entry", folder="interrupted")
    again = cached_tensors(key, lambda: {"x": torch.zeros(3)}, "an entry", folder="interrupted")
    assert first["x"].tolist() == again["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in folder.iterdir()) == [f"{digest(key)}.lock", f"{digest(key)}.safetensors"]
