"""From a command line to typed objects: the schemas of :mod:`condense.config.schema` registered in Hydra's ConfigStore,
the packaged YAML presets, and the checks every entry point runs before it touches data, a model or a cache.

Every YAML file under ``configs/`` is merged onto its schema, so a wrong type or an unknown key fails while
Hydra composes; :func:`parse` then turns the composed config into typed objects and checks choices and ranges.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from condense.config.device import resolve_device
from condense.config.schema import DistillJob, RunJob, TaskConfig
from condense.config.bench import BenchJob

JOBS = {"config": DistillJob, "run": RunJob, "bench": BenchJob}  # primary config name -> its schema

CONF_PACKAGE = "condense.configs"


class ConfigError(ValueError):
    """A config value outside what is allowed; the message names the full key, the value and what is allowed."""


def _entry_name(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    return task_name(entry.get("name"), entry.get("path"), entry.get("train_file"))


def sequence_name(tasks: Any) -> str:
    return "_then_".join(_entry_name(task) for task in tasks)


def task_name(name: str | None, path: str | None, train_file: str | None) -> str:
    """A task's name: the configured one, else what :func:`condense.data.tasks.default_task_name` derives from its data."""
    if name:
        return name
    if not path and not train_file:
        raise ConfigError("task.name, task.path and task.train_file are all unset: task=local needs task.path=DIR")
    from condense.data.tasks import default_task_name

    return default_task_name(path=path, train_file=train_file)


def register() -> None:
    """Schemas and resolvers, once per process (entry points and :func:`compose` call it)."""
    store = ConfigStore.instance()
    for name, schema in JOBS.items():
        store.store(name=f"{name}_schema", node=schema)
    OmegaConf.register_new_resolver("sequence_name", sequence_name, replace=True)
    OmegaConf.register_new_resolver("task_name", task_name, replace=True)


register()


def conf_file(*parts: str):
    """A file of the packaged configs (``configs/...``), found through the package, not a checkout."""
    return importlib.resources.files(CONF_PACKAGE).joinpath(*parts)


def presets(group: str) -> list[str]:
    """The preset names of a config group: its YAML files under ``configs/<group>/``."""
    return sorted(p.name[: -len(".yaml")] for p in conf_file(group).iterdir() if p.name.endswith(".yaml"))


def preset(group: str, name: str) -> dict:
    """The keys a preset of ``group`` changes (``preset("distill", "all")``), with its own defaults list applied."""
    if name not in presets(group):
        raise ConfigError(f"{group}={name!r}: no such preset; known: {presets(group)}")
    content = OmegaConf.to_container(OmegaConf.create(conf_file(group, f"{name}.yaml").read_text() or "{}"))
    merged: dict = {}
    for parent in content.pop("defaults", []):
        if parent != "_self_":
            merged = OmegaConf.to_container(OmegaConf.merge(merged, preset(group, parent)))
    return OmegaConf.to_container(OmegaConf.merge(merged, content))


def task_config(entry: Any, where: str = "task_sequence.tasks") -> TaskConfig:
    """A sequence or suite entry as a typed task config: a ``configs/task/`` name, or a mapping that overrides
    ``configs/task/local.yaml`` (``{name: mine, path: DIR}``) for data of your own."""
    schema = OmegaConf.structured(TaskConfig)
    try:
        if isinstance(entry, (dict, DictConfig)):
            node = OmegaConf.merge(schema, preset("task", "local"), entry)
        elif entry in presets("task"):
            node = OmegaConf.merge(schema, preset("task", entry))
        else:
            raise ConfigError(f"{where}: no task config for {entry!r}; known tasks: {presets('task')}, or a mapping "
                              "{name: ..., path: DIR}")
        task = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{where}: {entry!r}: {err}") from err
    task.name = task_name(task.name, task.path, task.train_file)
    validate(task, f"{where}[{task.name}]")
    return task


def validate(obj: Any, prefix: str) -> None:
    """Choices and ranges of every field, recursively; raises :class:`ConfigError` naming the full key."""
    for spec in dataclasses.fields(obj):
        value, key = getattr(obj, spec.name), f"{prefix}.{spec.name}" if prefix else spec.name
        rules = spec.metadata
        values = value if isinstance(value, list) else [value]
        if "choices" in rules:
            for item in values:
                if item not in rules["choices"]:
                    raise ConfigError(f"{key}={item!r} is not allowed; choose from {list(rules['choices'])}")
        if isinstance(value, list) and rules.get("non_empty") and not value:
            raise ConfigError(f"{key}=[] must list at least one value")
        if "min" in rules:
            low, strict = rules["min"], rules.get("strict", False)
            for item in values:
                if item is not None and (item < low or (strict and item == low)):
                    raise ConfigError(f"{key}={item!r} must be {'above' if strict else 'at least'} {low}")
        if "pattern" in rules and not rules["pattern"].fullmatch(str(value)):
            raise ConfigError(f"{key}={value!r} is not allowed; use {rules['allowed']}")
        if dataclasses.is_dataclass(value):
            validate(value, key)


def parse(cfg: DictConfig) -> DistillJob | RunJob | BenchJob:
    """The composed config as typed objects, every value checked; nothing is loaded or computed here."""
    try:
        job = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err)) from err
    if not isinstance(job, (DistillJob, RunJob, BenchJob)):
        raise ConfigError(f"not a condense job config: {type(job).__name__}; compose one of {sorted(JOBS)}")
    validate(job, "")
    check_distill(job.distill, "distill")
    if isinstance(job, DistillJob):
        job.task.name = task_name(job.task.name, job.task.path, job.task.train_file)
    if isinstance(job, RunJob):
        check_sequence(job)
    if isinstance(job, BenchJob):
        for entry in [*job.bench.tasks, *job.bench.scaling.tasks, *job.bench.prompting.tasks, *job.bench.seed_table.tasks,
                      *job.bench.seed_table.encoder_tasks]:
            task_config(entry, "bench.tasks")
    return job


def check_distill(distill, prefix: str) -> None:
    """Rules between distill keys: attention labels only move a model whose encoder weights train."""
    if distill.attention_labels != "none" and not distill.trains_encoder:
        raise ConfigError(
            f"{prefix}.attention_labels={distill.attention_labels!r} needs an inner loop that trains encoder "
            f"weights ({prefix}.params=last_n_layers or all, e.g. distill=all); with params=head the attention is fixed"
        )


class ValidateAtStart(Callback):
    """Parses the composed config before Hydra makes the run folder, so a bad value leaves nothing behind
    (``hydra.callbacks`` of every primary config in ``configs/``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        job = copy.deepcopy(config)
        with open_dict(job):
            del job["hydra"]
        try:
            resolve_device(parse(job).device)  # a local run: the device must exist on this machine
        except ValueError as err:  # ConfigError, or a device this machine lacks
            # Hydra turns a callback's exception into a warning and runs the job anyway; exiting is the only way
            # to stop before the run folder exists.
            raise SystemExit(f"config error: {err}") from None


def check_sequence(job: RunJob) -> None:
    names = [_entry_name(entry) for entry in job.task_sequence.tasks]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"task_sequence.tasks must name at least two different tasks, got {names}")
    for entry in job.task_sequence.tasks:
        task_config(entry)
    # Replayed sets must have been distilled for the parameters the sequence trains, or they teach the wrong model.
    layers = job.continual.trainable_layers
    if job.distill.params != "last_n_layers" or job.distill.n_layers != layers:
        raise ConfigError(
            f"the sequence trains the top {layers} block(s) and the heads, but distill trains {job.distill.params} "
            f"(distill.n_layers={job.distill.n_layers}); use distill=last_layer with distill.n_layers={layers}"
        )


def compose(config_name: str = "config", overrides: list[str] | tuple[str, ...] = ()) -> DistillJob | RunJob | BenchJob:
    """The typed job a command line would give: ``compose("run", ["task_sequence=sst2_then_agnews"])``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module=CONF_PACKAGE, version_base="1.3"):
        return parse(hydra_compose(config_name, overrides=list(overrides)))
