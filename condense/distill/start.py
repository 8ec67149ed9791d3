"""The sets distillation starts from: real tokens with one-hot labels, before any outer step.

:func:`initial_set` fills k examples per class with the tokens of random real examples of the class; the label-only
baselines start from :func:`real_examples_set`, real examples as they are. Either is a :class:`DistilledSet` whose
embeddings are its tokens' embeddings, with no inner protocol yet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condense.artifact.distilled_set import DistilledSet
from condense.models.encoders import Encoder


def initial_set(
    encoder: Encoder,
    texts: list[str],
    labels: torch.Tensor,
    label_names: list[str],
    ipc: int,
    seq_len: int,
    seed: int,
) -> DistilledSet:
    """k examples per class, each filled with the tokens of randomly drawn real examples of its class: the set
    distillation starts from: real tokens (its embeddings are theirs) with one-hot labels.

    Real texts are concatenated until ``seq_len`` is full, so every position starts as a real token in a
    plausible context instead of padding.
    """
    prefix, suffix = encoder.special_tokens()
    room = seq_len - len(prefix) - len(suffix)
    if room < 1:
        raise ValueError(f"distill.seq_len={seq_len} leaves no room for text between the special tokens")
    generator = torch.Generator().manual_seed(seed)
    pad = encoder.tokenizer.pad_token_id or 0
    rows, masks, row_labels = [], [], []
    labels = labels.cpu()
    for label in range(len(label_names)):
        members = torch.nonzero(labels == label).flatten()
        order = members[torch.randperm(len(members), generator=generator)].tolist()
        for example in range(ipc):
            content: list[int] = []
            # Start each example from a different real text, then keep drawing from the class's shuffled list.
            for index in order[example:] + order[:example]:
                content += encoder.tokenizer(texts[index], add_special_tokens=False)["input_ids"]
                if len(content) >= room:
                    break
            ids = prefix + content[:room] + suffix
            rows.append(ids + [pad] * (seq_len - len(ids)))
            masks.append([1] * len(ids) + [0] * (seq_len - len(ids)))
            row_labels.append(label)
    return token_set(encoder, torch.tensor(rows), torch.tensor(masks), torch.tensor(row_labels), label_names)


def real_examples_set(
    encoder: Encoder, texts: list[str], labels: torch.Tensor, label_names: list[str], max_length: int
) -> DistilledSet:
    """Real examples as a set to start from, for the label-only baselines (random and coreset subsets)."""
    tokens = encoder.tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="pt")
    return token_set(encoder, tokens["input_ids"], tokens["attention_mask"], labels.clone().cpu(), label_names, list(texts))


def token_set(
    encoder: Encoder,
    token_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    label_names: list[str],
    texts: list[str] | None = None,
) -> DistilledSet:
    """Real tokens with one-hot labels, the set before any distillation: its embeddings are its tokens' (no
    ``meta["progress"]`` and no inner protocol yet)."""
    table = encoder.token_embeddings.detach()
    return DistilledSet(
        embeddings=table[token_ids.to(table.device)].float().cpu(),
        attention_mask=attention_mask.long(),
        labels=labels.long(),
        soft_labels=F.one_hot(labels.long(), len(label_names)).float(),
        inner_lrs=torch.zeros(0),
        meta={"label_names": list(label_names)},
        token_ids=token_ids.long(),
        texts=texts,
    )
