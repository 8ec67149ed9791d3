"""Every option of every config group composes into typed objects; bad values fail fast, naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from condense.config import parsing as config
from condense.config import schema
from condense.config.parsing import ConfigError, compose, preset, presets, task_config

GROUPS = {  # group -> the primary configs that have it
    "task": ["config"], "model": ["config", "run", "bench"], "distill": ["config", "bench"],
    "eval": ["config", "bench"], "continual": ["run"], "task_sequence": ["run"], "bench": ["bench"],
}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in presets(g)])
def test_every_option_of_every_group_builds_typed_objects(group, option, tmp_path):
    overrides = [f"{group}={option}"] + ([f"task.path={tmp_path}"] if (group, option) == ("task", "local") else [])
    for primary in GROUPS[group]:
        job = compose(primary, overrides)
        assert isinstance(job, config.JOBS[primary])
        node = job.task_sequence if group == "task_sequence" else getattr(job, group)
        assert dataclasses.is_dataclass(node)
        if group == "task_sequence":
            assert all(isinstance(task_config(entry), schema.TaskConfig) for entry in node.tasks)


def test_a_sequence_takes_only_sets_distilled_for_what_it_trains():
    assert compose("run", ["distill=last_layer"]).distill.params == "last_n_layers"
    with pytest.raises(ConfigError, match=r"but distill trains all \(distill.n_layers=1\); use distill=last_layer"):
        compose("run", ["distill=all"])


def test_presets_are_the_schema_plus_what_they_change():
    head = compose("config", ["distill=head"]).distill
    assert head == schema.DistillConfig()  # the schema's defaults are the head preset
    assert preset("distill", "last_layer") == {"params": "last_n_layers", "inner_steps": 3, "outer_steps": 150, "real_batch_size": 32}
    bert = compose("config", ["distill=gpu_bert_base"]).distill
    assert (bert.params, bert.inner_steps, bert.seq_len, bert.checkpoint_every) == ("all", 1, 512, 100)
    paper = compose("bench", ["bench=paper"]).bench
    assert (paper.name, paper.seeds, paper.compute.head_max_examples, paper.compute.head_batch_size) == ("paper", [0, 1, 2], None, 32)
    assert compose("run").continual == schema.ContinualConfig()  # one default for curve points, not two
    default = compose("run").continual  # every strategy, class-incremental, three seeds
    assert (default.strategies, default.scenarios, default.seeds) == (list(schema.DEFAULT_STRATEGIES), ["class"], [0, 1, 2])
    assert set(schema.STRATEGIES) - set(default.strategies) == {"merged_sets"}
    full = compose("run", ["continual=full"]).continual  # the larger experiment: both scenarios, 5 seeds, 2,000 rows
    assert (full.seeds, full.scenarios, full.train_examples_per_task) == ([0, 1, 2, 3, 4], ["task", "class"], 2000)
    # The larger preset sets its evaluation sizes itself: a smaller default must not shrink its results'.
    assert (full.test_examples_per_task, full.curve_examples_per_task, full.curve_points_per_experience) == (500, 200, 6)
    assert dataclasses.replace(full, seeds=default.seeds, scenarios=default.scenarios, train_examples_per_task=1000,
                               test_examples_per_task=250, curve_examples_per_task=60, curve_points_per_experience=4) == default


def test_the_schema_choices_are_what_the_library_implements():
    from condense.data import coresets
    from condense.distill import inner
    from condense.models import encoders as models
    from condense.bench import EXPERIMENTS

    assert set(schema.PARAM_SUBSETS) == set(models.PARAM_SUBSETS)
    assert set(schema.INNER_OPTIMIZERS) == set(inner.OPTIMIZERS)
    assert set(schema.BASELINES) <= set(coresets.SELECTORS)
    assert tuple(schema.EXPERIMENTS) == tuple(EXPERIMENTS)


def test_the_continual_choices_are_the_registries():
    from condense.continual import data, strategies

    assert tuple(schema.STRATEGIES) == tuple(strategies.STRATEGIES)
    assert set(schema.SCENARIOS) == set(data.SCENARIOS)
    assert set(schema.CONTINUAL_OPTIMIZERS) == set(strategies.OPTIMIZERS)
    # A strategy's own settings sit under its name, and only strategies name settings groups that way.
    groups = {f.name for f in dataclasses.fields(schema.ContinualConfig)
              if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())}
    assert groups & set(schema.STRATEGIES) == {"mean_matched_replay", "super_dataset"}


@pytest.mark.parametrize("overrides,message", [
    (["distill.lr_inputs=abc"], r"distill.lr_inputs"),  # wrong type
    (["distill.foo=1"], r"foo"),  # unknown key
    (["distill.params=foo"], r"distill.params='foo' is not allowed; choose from \['head', 'last_n_layers', 'all'\]"),
    (["distill.ipc=-1"], r"distill.ipc=-1 must be at least 1"),
    (["distill.lr_labels=0"], r"distill.lr_labels=0.0 must be above 0.0"),
    (["eval.finetune.recipe.params=head"], r"eval.finetune.recipe.params='head' is not allowed"),
    (["eval.baselines=[random,coreset]"], r"eval.baselines='coreset' is not allowed"),
    (["device=gpu"], r"device='gpu' is not allowed; use auto, cpu, cuda or cuda:N"),
    (["precision=fp16"], r"precision='fp16' is not allowed; choose from \['fp32', 'bf16'\]"),
    (["threads=0"], r"threads=0 must be at least 1"),
    (["task.max_train_examples=0"], r"task.max_train_examples=0 must be at least 1"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(Exception, match=message):
        compose("config", overrides)


@pytest.mark.parametrize("overrides,message", [
    (["continual.strategies=[naive,magic]"], r"continual.strategies='magic' is not allowed"),
    (["continual.scenarios=[domain]"], r"continual.scenarios='domain' is not allowed"),
    (["continual.memory_per_class=0"], r"continual.memory_per_class=0 must be at least 1"),
    (["continual.optimizer=rmsprop"], r"continual.optimizer='rmsprop' is not allowed"),
    (["continual.seeds=[0,-1]"], r"continual.seeds=-1 must be at least 0"),
    (["continual.strategies=[]"], r"continual.strategies=\[\] must list at least one value"),
    (["task_sequence.tasks=[ag_news]"], r"at least two different tasks"),
    (["task_sequence.tasks=[ag_news,agnews]"], r"no task config for 'agnews'; known tasks: \['ag_news', 'imdb', 'local'"),
    (["task_sequence.tasks=[ag_news,{path: x, colour: red}]"], r"colour"),
    (["distill=head"], r"use distill=last_layer"),
])
def test_bad_sequences_fail_at_start_up(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose("run", overrides)


def test_bench_presets_check_their_tasks():
    with pytest.raises(ConfigError, match=r"bench.tasks: no task config for 'sst3'"):
        compose("bench", ["bench.tasks=[sst3]"])
    with pytest.raises(ConfigError, match=r"bench.scaling.outer_steps=0 must be at least 1"):
        compose("bench", ["bench.scaling.outer_steps=0"])
    with pytest.raises(ConfigError, match=r"bench.scaling.ks=0 must be at least 1"):
        compose("bench", ["bench.scaling.ks=[1,0]"])


def test_a_missing_local_path_is_reported_as_a_missing_value():
    with pytest.raises(ConfigError, match=r"task.path"):
        compose("config", ["task=local"])


def test_a_local_task_is_named_after_its_data(tiny_task_dir, tmp_path):
    named = compose("config", ["task=local", f"task.path={tiny_task_dir}"])
    assert named.task.name == tiny_task_dir.name and named.out.startswith(f"runs/{tiny_task_dir.name}/")
    chosen = compose("config", ["task=local", f"task.path={tiny_task_dir}", "task.name=mine"])
    assert chosen.task.name == "mine" and chosen.out == "runs/mine/head-ipc1-seed0"


@pytest.mark.parametrize("override", [
    "distill.lr_inputs=abc", "distill.foo=1", "distill=foo", "distill.ipc=-1", "distill.params=foo", "device=cuda:7",
])
def test_the_command_line_rejects_bad_config_before_anything_loads(override, tmp_path):
    """A data folder that does not exist is never looked at, and no run folder is made (how fast this is:
    ``benchmarks/config_errors.py``)."""
    result = subprocess.run(
        [sys.executable, "-m", "condense.distill", "task=local", f"task.path={tmp_path / 'nowhere'}", override],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert list(tmp_path.iterdir()) == []
    key = override.split("=")[0]
    assert key.split(".")[-1] in result.stderr, result.stderr[-1500:]
    assert "nowhere" not in result.stderr.replace(str(tmp_path / "nowhere"), "") and "DataError" not in result.stderr


def test_configs_register_their_schemas_once():
    from hydra.core.config_store import ConfigStore

    config.register()
    stored = ConfigStore.instance().repo
    assert {f"{name}_schema.yaml" for name in config.JOBS} <= set(stored)


def test_a_device_this_machine_lacks_is_refused_before_any_data_loads(tmp_path, monkeypatch):
    import torch

    from condense.config.device import resolve_device
    from condense.jobs.distill_task import distill_task

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    job = compose("config", ["task=local", f"task.path={tmp_path / 'nowhere'}", "device=cuda:1"])
    with pytest.raises(ValueError, match=r"device='cuda:1': this machine has no CUDA device"):
        distill_task(job)  # the data folder does not exist: reaching it would raise DataError instead
