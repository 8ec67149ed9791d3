"""Sweeps on real launchers (submitit's local executor, joblib), the validation-split search, and the collected table."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from omegaconf import OmegaConf

from condense.jobs import distill_task as pipeline
from condense.jobs import search
from condense import sweep
from condense.eval import baselines
from condense.jobs.collect import collect
from condense.config.parsing import ConfigError, compose
from condense.data.tasks import DataError, task_from_config
from condense.jobs.distill_task import distill_task

TINY = ["model.name={bert}", "eval=smoke", "eval.baselines=[]", "eval.finetune.n_inits=0", "distill.outer_steps=2",
        "distill.seq_len=8", "distill.real_batch_size=8"]


def tiny(tiny_model_dirs) -> list[str]:
    return [o.format(bert=tiny_model_dirs["bert"]) for o in TINY]


def run_sweep(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "condense.distill", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def hydra_node(*overrides: str):
    with initialize_config_module(config_module="condense.configs", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=True).hydra


def test_parallel_jobs_never_oversubscribe_the_cores(monkeypatch):
    monkeypatch.setattr(sweep, "usable_cores", lambda: 2)
    assert [sweep.parallel_jobs(t) for t in (1, 2, 3)] == [2, 1, 1]
    monkeypatch.setattr(sweep, "usable_cores", lambda: 16)
    assert sweep.parallel_jobs(4) == 4 and sweep.parallel_jobs(1) == 16


def test_gpu_sweeps_run_one_job_per_visible_gpu_each_on_its_own(monkeypatch, tmp_path):
    monkeypatch.setattr(sweep, "usable_cores", lambda: 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [sweep.parallel_jobs(1, d) for d in ("cuda", "auto", "cuda:1", "cpu")] == [3, 3, 1, 16]
    assert sweep.parallel_jobs(8, "cuda") == 2, "the cores still bound the jobs"
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "cache"))
    job, hydra = compose("config", ["device=cuda"]), OmegaConf.create({
        "launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"},
        "sweeper": {}, "runtime": {"output_dir": str(tmp_path / "job")}, "job": {"num": 0}})
    assert sweep.prepare(job, hydra).device == "cuda:0"
    # While this worker's job holds GPU 0, another worker's job takes GPU 1.
    other = subprocess.run([sys.executable, "-c", "from pathlib import Path; from condense import sweep; "
                            f"print(sweep.claim_gpu(3, Path({str(tmp_path / 'cache' / 'gpu-locks')!r})))"],
                           capture_output=True, text=True)
    assert other.stdout.strip() == "1", other.stderr
    assert sweep.prepare(compose("config", ["device=cuda"]), hydra).device == "cuda:0", "a worker's own GPU is free to it"
    slurm = OmegaConf.create({"launcher": {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"},
                              "sweeper": {}, "runtime": {"output_dir": str(tmp_path / "job")}})
    assert sweep.prepare(compose("config", ["device=cuda"]), slurm).device == "cuda", "SLURM allocates per job"


def test_the_launcher_configs_compose_and_give_each_job_its_threads():
    assert compose("config").out == "runs/sst2/head-ipc1-seed0"  # a single run ignores the launcher
    parallel = hydra_node("threads=1").launcher
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == sweep.parallel_jobs(1)
    slurm = hydra_node("hydra/launcher=slurm", "threads=4").launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.cpus_per_task == 4
    assert slurm.setup == ["export OMP_NUM_THREADS=4 MKL_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4"]
    assert hydra_node("hydra/launcher=slurm_local").launcher._target_.endswith("LocalLauncher")
    searcher = hydra_node("hydra/sweeper=distill_search").sweeper
    assert searcher.direction == "maximize" and searcher.params["search.enabled"] == "true"
    assert set(searcher.params) >= {"distill.lr_inputs", "distill.lr_labels", "distill.lr_lrs", "distill.inner_steps",
                                    "distill.inner_lr"}
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None:  # the optional [ray] extra
        ray = hydra_node("hydra/launcher=ray_cluster", "threads=2").launcher
        assert ray.ray.remote.num_cpus == 2


def test_out_is_refused_in_a_sweep_before_any_job_starts():
    config = OmegaConf.create({"hydra": {"overrides": {"task": ["distill.seed=0,1", "out=somewhere"]}}})
    with pytest.raises(SystemExit, match=r"pass hydra.sweep.dir=DIR instead of out=DIR"):
        sweep.SweepCallbacks().on_multirun_start(config)


def test_an_optuna_sweep_must_score_on_the_validation_split(tmp_path):
    job = compose("config")
    hydra = OmegaConf.create({"sweeper": {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"},
                              "runtime": {"output_dir": str(tmp_path / "job")}})
    with pytest.raises(ConfigError, match=r"search.enabled=true"):
        sweep.prepare(job, hydra)
    job.search.enabled = True
    assert sweep.prepare(job, hydra).out == str(tmp_path / "job")  # a sweep's job writes into its own folder
    assert sweep.prepare(compose("config")).out == "runs/sst2/head-ipc1-seed0"  # not in a sweep: out


def test_a_sweep_on_submitit_local_writes_four_artefacts_and_one_table(tiny_model_dirs, tiny_task_dir,
                                                                        tiny_sentiment_dir, tmp_path):
    """The issue's bar: tasks x seeds through the submitit launcher (its local executor), one artefact per job."""
    run_sweep(tmp_path, "hydra/launcher=slurm_local", "task=local", f"task.path={tiny_task_dir},{tiny_sentiment_dir}",
              "distill.seed=0,1", *tiny(tiny_model_dirs))
    folder = tmp_path / "sweep"
    jobs = sorted(p.parent.name for p in folder.glob("*/meta.json"))
    assert jobs == [f"{i}_{task}-head-ipc1-seed{seed}" for i, (task, seed) in
                    enumerate((t, s) for t in (tiny_task_dir.name, tiny_sentiment_dir.name) for s in (0, 1))]
    table = json.loads((folder / "sweep.json").read_text())
    assert table["problems"] == [] and table["varying_keys"] == ["distill.seed"]
    assert [(row["task"], row["config"]["distill.seed"]) for row in table["rows"]] == [
        (tiny_task_dir.name, 0), (tiny_task_dir.name, 1), (tiny_sentiment_dir.name, 0), (tiny_sentiment_dir.name, 1)]
    rows = [line for line in (folder / "sweep.md").read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[0].lstrip("| ") for line in rows] == jobs
    assert not (tmp_path / "runs").exists()  # nothing went to the default out


def test_a_search_on_joblib_scores_on_validation_rows_and_saves_the_best(tiny_model_dirs, tiny_task_dir, tmp_path):
    """Two Optuna trials through the default (joblib) launcher: each scored on rows carved from the training split."""
    result = run_sweep(tmp_path, "hydra/sweeper=distill_search", "hydra.sweeper.n_trials=2", "task=local",
                       f"task.path={tiny_task_dir}", "search.validation_fraction=0.25", *tiny(tiny_model_dirs))
    assert f"Joblib.Parallel(n_jobs={sweep.parallel_jobs(1)}," in result.stdout + result.stderr
    folder = tmp_path / "sweep"
    scores = {}
    for meta in folder.glob("*/meta.json"):
        metrics = json.loads((meta.parent / "metrics.json").read_text())
        assert set(metrics) == {"validation", "split"}  # no test-split accuracy exists to tune on
        assert (metrics["split"]["train_rows"], metrics["split"]["validation_rows"]) == (18, 6)
        scores[meta.parent.name] = metrics["validation"]["distilled"]["mean"]
    assert len(scores) == 2
    best = OmegaConf.load(folder / "best.yaml")
    assert best.validation_accuracy == max(scores.values()) == OmegaConf.load(folder / "optimization_results.yaml").best_value
    assert best.artefact == str(folder / max(scores, key=scores.get))
    assert "search.enabled" not in best.command and "distill.lr_inputs=" in best.command


def test_a_trial_distils_without_its_validation_rows_and_never_encodes_the_test_split(
        tiny_model_dirs, tiny_task_dir, tmp_path, monkeypatch):
    job = compose("config", ["task=local", f"task.path={tiny_task_dir}", *tiny(tiny_model_dirs), "search.enabled=true",
                             "search.validation_fraction=0.5", f"out={tmp_path / 'trial'}"])
    task = task_from_config({"path": str(tiny_task_dir)})
    encoded = []
    real_features = pipeline.text_features
    def spy(enc, texts, *args):
        encoded.append(list(texts))
        return real_features(enc, texts, *args)

    monkeypatch.setattr(pipeline, "text_features", spy)  # the training rows
    monkeypatch.setattr(baselines, "text_features", spy)  # the rows a set is scored on
    distilled = distill_task(job)
    assert task.test["text"] not in encoded  # only the training split and its validation rows were encoded
    assert encoded[0] == task.train["text"] and set(encoded[1]) <= set(task.train["text"])
    assert set(distilled.metrics) == {"validation", "split"} and distilled.metrics["split"]["validation_rows"] == 12
    assert search.objective(job, distilled) == distilled.metrics["validation"]["distilled"]["mean"]
    assert search.objective(compose("config"), distilled) is None  # only a search trial has an objective


def test_the_validation_split_is_stratified_disjoint_and_the_same_every_trial(tiny_task_dir):
    task = task_from_config({"path": str(tiny_task_dir)})
    config = compose("config", ["search.validation_fraction=0.25"]).search
    split, keep = search.validation_split(task, config)
    again, keep_again = search.validation_split(task, config)
    assert keep.tolist() == keep_again.tolist() and split.test["text"] == again.test["text"]
    assert len(split.train) + len(split.test) == len(task.train) == 24 and len(split.test) == 6
    assert np.bincount(split.test["label"]).tolist() == [2, 2, 2]
    assert split.train["text"] == [task.train["text"][i] for i in keep.tolist()]
    with pytest.raises(DataError, match=r"search.validation_fraction=1.0 must be below 1"):
        search.validation_split(task, compose("config", ["search.validation_fraction=1"]).search)


@pytest.fixture(scope="module")
def artefact(tiny_model_dirs, tiny_task_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("artefact") / "run"
    distill_task(compose("config", ["task=local", f"task.path={tiny_task_dir}", *tiny(tiny_model_dirs), f"out={out}"]))
    return out


def test_a_folder_distilled_on_other_rows_is_never_reused(artefact, tiny_task_dir, tmp_path):
    trial = compose("config", ["task=local", f"task.path={tiny_task_dir}", "search.enabled=true"])
    with pytest.raises(DataError, match=r"distilled on every training row; this job distils on the search split"):
        search.claim_folder(artefact, trial)
    search.claim_folder(tmp_path, trial)
    (tmp_path / "meta.json").write_text("{}")  # a trial's artefact
    with pytest.raises(DataError, match=r"distilled on a search trial's split .*; this job distils on every training row"):
        search.claim_folder(tmp_path, compose("config", ["task=local", f"task.path={tiny_task_dir}"]))


def test_collect_lists_broken_and_unfinished_folders_by_name(artefact, tmp_path, capsys):
    for name in ("0_good", "10_good", "2_broken"):
        shutil.copytree(artefact, tmp_path / name)
    meta = json.loads((tmp_path / "10_good" / "meta.json").read_text())
    meta["config"]["distill"]["seed"] = 7
    (tmp_path / "10_good" / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "2_broken" / "embeddings.safetensors").write_bytes(b"not a tensor file")
    (tmp_path / "3_failed" / ".hydra").mkdir(parents=True)
    assert sweep.main(["collect", str(tmp_path)]) == 1  # some folder had no usable artefact
    printed = capsys.readouterr().out
    assert [row["folder"] for row in collect(tmp_path).rows] == ["0_good", "10_good"]  # in job order
    assert "| distill.seed |" in printed and f"| 10_good | {meta['task']} | 7 |" in printed
    assert "- `2_broken`: ArtifactError:" in printed and "- `3_failed`: no artefact" in printed
    table = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["folder"] for p in table["problems"]] == ["2_broken", "3_failed"]
    assert (tmp_path / "sweep.md").read_text() == printed


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="the [ray] extra")
def test_a_sweep_on_a_local_ray_cluster(tiny_model_dirs, tiny_task_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "local")  # ray_cluster's address: a Ray instance started for this sweep
    run_sweep(tmp_path, "hydra/launcher=ray_cluster", "task=local", f"task.path={tiny_task_dir}", "distill.seed=0,1",
              *tiny(tiny_model_dirs))
    assert len(collect(tmp_path / "sweep").rows) == 2
