"""Qualitative study: what the distilled examples say, and how they differ from real text of their class.

For each task and distillation seed, every distilled example of the studied set with its soft label and
decoded text; the real training examples nearest to it in the frozen encoder's feature space; statistics of
its tokens against real text of its class cut to the same length; and the confidence of full-data linear
probes (the head-mode reference of ``condense.eval.protocols``) on it, on its neighbours and on that real text.

Real comparison text is built like the distilled set's initialisation (``condense.distill.initial_set``):
random training texts of the class, concatenated until the distilled examples' token budget is full, each
text used once. Distillation starts from exactly such text, so the comparison shows what it changed; and
equal lengths keep length-dependent statistics (repeated tokens, token count) comparable.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import statistics

import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from condense.artifact.distilled_set import DistilledSet
from condense.bench.common import TaskData, studied_set, task_data
from condense.bench.qualitative_report import TOKEN_STATISTICS
from condense.eval.protocols import probe_head
from condense.models.features import cached_tensors, text_features
from condense.models.heads import head_accuracy
from condense.models.encoders import linear_head
from condense.report.tables import summarize_values
from condense.config.bench import BenchJob

log = logging.getLogger(__name__)


def token_statistics(tokens: list[str]) -> dict[str, float]:
    """Statistics of one example's WordPiece tokens (shares in [0, 1]; 0 when there is nothing to count).

    * ``stop_words``: share of its words in scikit-learn's English stop-word list. Words are the tokens with
      their ``##`` continuation pieces joined back on, lower-cased. Punctuation is left out of this share
      (neither stop word nor word), so text full of commas does not look like content: it has its own share.
    * ``repeated``: share of tokens that already occurred earlier in the same example.
    * ``subwords``: share of ``##`` continuation pieces.
    * ``punctuation``: share of tokens with no letter or digit.
    * ``tokens``: how many tokens.
    """
    words: list[str] = []
    punctuation = 0
    for token in tokens:
        if token.startswith("##") and words:
            words[-1] += token[2:]
        elif any(ch.isalnum() for ch in token):
            words.append(token)
        else:
            punctuation += 1
    seen: set[str] = set()
    repeated = 0
    for token in tokens:
        repeated += token in seen
        seen.add(token)
    stop_words = sum(word.lower() in ENGLISH_STOP_WORDS for word in words)
    return {
        "stop_words": _share(stop_words, len(words)),
        "repeated": _share(repeated, len(tokens)),
        "subwords": _share(sum(token.startswith("##") for token in tokens), len(tokens)),
        "punctuation": _share(punctuation, len(tokens)),
        "tokens": float(len(tokens)),
    }


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def nearest_neighbours(queries: torch.Tensor, references: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities (Q, k), most similar first, and the indices into ``references`` of the ``k`` nearest."""
    similarities = F.normalize(queries, dim=-1) @ F.normalize(references, dim=-1).T
    return similarities.topk(min(k, len(references)), dim=-1)


def probe_heads(data: TaskData, n_inits: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Full-data linear probes from ``n_inits`` fresh inits: with ``seed = eval.seed`` the very heads whose test
    accuracy is the ``full`` reference in ``metrics.json``.

    Each costs 500 full-batch steps over every training feature (~15-30 s on a 2-core CPU), most of this
    experiment's time, so each head is cached on disk, keyed by the training features and labels themselves and
    by :func:`probe_head`'s signature (its default steps, lr and weight decay).
    """
    digest = hashlib.sha256(str(inspect.signature(probe_head)).encode())
    for tensor in (data.train_features, data.train_labels):
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    heads = [
        cached_tensors(
            ("probe head", digest.hexdigest(), str(head_seed)),
            lambda head_seed=head_seed: probe_head(data.train_features, data.train_labels, head_seed),
            f"{data.name}: a full-data linear probe (seed {head_seed})",
            folder="probes",
        )
        for head_seed in range(seed, seed + n_inits)
    ]
    # A head read back from the cache comes to the host; the features it is applied to are on the encoder's device.
    return [{name: tensor.to(data.train_features.device) for name, tensor in head.items()} for head in heads]


def probe_outputs(
    heads: list[dict[str, torch.Tensor]], features: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head's probability of ``labels`` and its predicted class, both (heads, examples)."""
    with torch.no_grad():
        probabilities = torch.stack([linear_head(features, head).softmax(-1) for head in heads])
    confidence = probabilities.gather(-1, labels.expand(len(heads), -1).unsqueeze(-1)).squeeze(-1)
    return confidence, probabilities.argmax(-1)


def real_windows(data: TaskData, label: int, count: int, length: int, generator: torch.Generator) -> list[str]:
    """Up to ``count`` real texts of class ``label`` of ``length`` tokens, made like the distilled set's init."""
    tokenizer = data.encoder.tokenizer
    texts = data.task.train["text"]
    members = torch.nonzero(data.train_labels == label).flatten()
    windows: list[str] = []
    ids: list[int] = []
    for index in members[torch.randperm(len(members), generator=generator)].tolist():
        ids += tokenizer(texts[index], add_special_tokens=False)["input_ids"]
        if len(ids) >= length:
            windows.append(_decoded(data, ids[:length]))
            ids = []
            if len(windows) == count:
                return windows
    if ids:  # the class ran out of text: a shorter last window beats a class without one
        windows.append(_decoded(data, ids))
    return windows


def _decoded(data: TaskData, ids: list[int]) -> str:
    # As condense.distill.decode.decode_texts writes the distilled text, so both sides are tokenized alike again.
    return data.encoder.tokenizer.decode(ids, skip_special_tokens=True).strip()


def token_budget(data: TaskData) -> int:
    """Content tokens of a distilled example: the set's ``seq_len`` less the special tokens around the text."""
    prefix, suffix = data.encoder.special_tokens()
    return data.job.distill.seq_len - len(prefix) - len(suffix)


def study_set(
    data: TaskData, distilled: DistilledSet, heads: list[dict[str, torch.Tensor]], n_neighbours: int
) -> list[dict]:
    """One entry per distilled example, ordered by class: soft label, text, neighbours, statistics, confidence."""
    names = data.task.label_names
    if distilled.texts is None:
        raise ValueError(f"the studied set of {data.name} has no decoded texts to study")
    texts = distilled.texts
    features = text_features(data.encoder, texts, data.job.task.max_length, f"{data.name} decoded distilled texts")
    confidence, predicted = probe_outputs(heads, features, distilled.labels)
    similarities, indices = nearest_neighbours(features, data.train_features, n_neighbours)
    neighbour_labels = data.train_labels[indices]
    neighbour_confidence, neighbour_predicted = probe_outputs(
        heads, data.train_features[indices.flatten()], neighbour_labels.flatten()
    )
    train_texts = data.task.train["text"]
    examples = []
    for i in sorted(range(len(texts)), key=lambda i: int(distilled.labels[i])):
        label = int(distilled.labels[i])
        neighbours = []
        for j in range(indices.shape[1]):
            flat = i * indices.shape[1] + j
            neighbours.append({
                "index": int(indices[i, j]),
                "text": train_texts[int(indices[i, j])],
                "label": names[int(neighbour_labels[i, j])],
                "similarity": float(similarities[i, j]),
                "confidence": summarize_values(neighbour_confidence[:, flat].tolist()),
                "predicted": [names[p] for p in neighbour_predicted[:, flat].tolist()],
            })
        examples.append({
            "index": i,
            "class": names[label],
            "soft_label": {name: float(p) for name, p in zip(names, distilled.soft_labels[i].tolist())},
            "text": texts[i],
            "statistics": token_statistics(data.encoder.tokenizer.tokenize(texts[i])),
            "confidence": summarize_values(confidence[:, i].tolist()),
            "predicted": [names[p] for p in predicted[:, i].tolist()],
            "neighbours": neighbours,
        })
    return examples


def real_comparison(
    data: TaskData, heads: list[dict[str, torch.Tensor]], per_class: int, length: int, seed: int
) -> dict[str, dict]:
    """Token statistics of real windows and the probes' confidence in their class, per class and over all."""
    generator = torch.Generator().manual_seed(seed)
    names = data.task.label_names
    windows = {label: real_windows(data, label, per_class, length, generator) for label in range(len(names))}
    texts = [text for label in windows for text in windows[label]]
    labels = torch.tensor([label for label in windows for _ in windows[label]], device=data.encoder.device)
    features = text_features(data.encoder, texts, data.job.task.max_length, f"{data.name} real windows")
    confidence, predicted = probe_outputs(heads, features, labels)
    stats = [token_statistics(data.encoder.tokenizer.tokenize(text)) for text in texts]

    def summary(rows: list[int]) -> dict:
        return {
            "examples": len(rows),
            "statistics": {key: summarize_values([stats[r][key] for r in rows]) for key in TOKEN_STATISTICS},
            # Per window, the mean over probes: the spread is then over windows, as for the distilled examples.
            "confidence": summarize_values(confidence[:, rows].mean(0).tolist()),
            "predicted_as_class": (predicted[:, rows] == labels[rows]).float().mean().item(),
        }

    classes = {name: summary((labels == label).nonzero().flatten().tolist()) for label, name in enumerate(names)}
    return {"classes": classes, "overall": summary(list(range(len(texts))))}


def distilled_summary(examples: list[dict]) -> dict:
    """Token statistics and confidence of distilled examples (of all seeds) and of their nearest real examples."""
    neighbours = [n for e in examples for n in e["neighbours"]]
    return {
        "examples": len(examples),
        "statistics": {key: summarize_values([e["statistics"][key] for e in examples]) for key in TOKEN_STATISTICS},
        "confidence": summarize_values([e["confidence"]["mean"] for e in examples]),
        "predicted_as_class": statistics.fmean(p == e["class"] for e in examples for p in e["predicted"]),
        "neighbour_confidence": summarize_values([n["confidence"]["mean"] for n in neighbours]),
        "neighbour_similarity": summarize_values([n["similarity"] for n in neighbours]),
        "neighbours_of_same_class": statistics.fmean(
            n["label"] == e["class"] for e in examples for n in e["neighbours"]
        ),
    }


def study_task(job: BenchJob, data: TaskData) -> dict:
    """Every distilled example of the task's studied sets (one per ``bench.seeds``), and real text to compare."""
    settings = job.bench.qualitative
    heads = probe_heads(data, settings.probe_inits, job.eval.seed)
    test_accuracy = [head_accuracy(head, data.test.features, data.test.labels) for head in heads]
    length = token_budget(data)
    seeds = {}
    for seed in job.bench.seeds:
        log.info("%s: studying the distilled set of seed %d", data.name, seed)
        seeds[str(seed)] = study_set(data, studied_set(job, data, seed), heads, settings.neighbours)
    every_example = [e for examples in seeds.values() for e in examples]
    real = real_comparison(data, heads, settings.real_sample, length, job.eval.seed)
    return {
        "label_names": list(data.task.label_names),
        "token_budget": length,
        "probe": {"inits": settings.probe_inits, "seed": job.eval.seed, "test_accuracy": summarize_values(test_accuracy)},
        "seeds": seeds,
        "classes": {
            name: {
                "distilled": distilled_summary([e for e in every_example if e["class"] == name]),
                "real": real["classes"][name],
            }
            for name in data.task.label_names
        },
        "overall": {"distilled": distilled_summary(every_example), "real": real["overall"]},
    }


def run(job: BenchJob) -> dict:
    tasks = {}
    for entry in job.bench.tasks:
        data = task_data(job, entry)
        tasks[data.name] = study_task(job, data)
    return {"tasks": tasks}

