"""A distillation stopped at any point continues from its checkpoint and ends with the uninterrupted run's tensors."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from condense.distill import checkpoint
from condense.artifact.distilled_set import DistilledSet
from condense.config.parsing import compose
from condense.models.features import encode_tokens, tokenize
from condense.distill.loop import RealData, distill
from condense.distill.start import initial_set
from condense.jobs.distill_task import distill_task

TEXTS = ["stocks market profit bank"] * 4 + ["football match goal team"] * 4
LABELS = torch.tensor([0] * 4 + [1] * 4)
NAMES = ["business", "sports"]
SET_TENSORS = ("embeddings", "soft_labels", "inner_lrs", "token_ids", "attention_labels")


@pytest.fixture(scope="module")
def real(tiny_bert):
    tokens = tokenize(tiny_bert, TEXTS, 16)
    return RealData(labels=LABELS, features=encode_tokens(tiny_bert, tokens), tokens=tokens)


def assert_same_set(resumed: DistilledSet, whole: DistilledSet) -> None:
    for name in SET_TENSORS:
        a, b = getattr(resumed, name), getattr(whole, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.equal(a, b), f"{name} differs after resuming"
    assert resumed.meta["outer_loss"] == whole.meta["outer_loss"]
    assert resumed.texts == whole.texts


MODES = {
    "head, sgd inner loop": dict(),
    "all weights, adam inner loop, attention labels, checkpointed unroll": dict(
        params="all", inner_optimizer="adam", inner_steps=2, attention_labels="first_token", bptt="checkpoint"),
    "noise init, no projection, hard labels": dict(init="noise", projection="none", labels="hard"),
}


@pytest.mark.parametrize("mode", MODES)
def test_resuming_from_any_checkpoint_gives_the_uninterrupted_tensors(tiny_bert, real, tmp_path, mode):
    config = compose("config", ["distill.outer_steps=7", "distill.checkpoint_every=3", "distill.seq_len=8",
                                "distill.real_batch_size=4", "distill.lr_inputs=0.5"]).distill
    config = type(config)(**{**config.__dict__, **MODES[mode]})
    start = initial_set(tiny_bert, TEXTS, LABELS, NAMES, 1, config.seq_len, 0)
    states = []
    whole = distill(tiny_bert, real, start, config, on_checkpoint=states.append, progress=False)
    assert [s.step for s in states] == [3, 6]
    identity = {"run": mode}
    for state in states:  # through the file, as a killed process would
        path = tmp_path / f"{state.step}.safetensors"
        checkpoint.save(path, state, identity)
        resumed = distill(tiny_bert, real, start, config, resume=checkpoint.load(path, identity), progress=False)
        assert_same_set(resumed, whole)
    assert resumed.progress.outer_step == 7


def test_a_checkpoint_of_other_settings_or_a_damaged_one_is_set_aside(tiny_bert, real, tmp_path, caplog):
    config = compose("config", ["distill.outer_steps=3", "distill.checkpoint_every=2", "distill.seq_len=8",
                                "distill.real_batch_size=4"]).distill
    states = []
    distill(tiny_bert, real, initial_set(tiny_bert, TEXTS, LABELS, NAMES, 1, 8, 0), config, on_checkpoint=states.append,
            progress=False)
    path = tmp_path / checkpoint.FILE
    checkpoint.save(path, states[0], {"distill": {"lr_inputs": 0.01, "seed": 0}})
    with caplog.at_level(logging.WARNING):
        assert checkpoint.load(path, {"distill": {"lr_inputs": 0.02, "seed": 0}}) is None
    assert "distill.lr_inputs: 0.01 -> 0.02" in caplog.text and not path.exists()
    assert len(list(tmp_path.glob(f"{checkpoint.FILE}.stale-*"))) == 1
    path.write_bytes(b"not a safetensors file")
    assert checkpoint.load(path, {}) is None and "cannot be read" in caplog.text and not path.exists()
    assert checkpoint.load(path, {}) is None  # nothing there: a fresh start, silently


def command(tiny_model_dirs, tiny_task_dir, out):
    return [sys.executable, "-m", "condense.distill", "task=local", f"task.path={tiny_task_dir}",
            f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "distill.inner_optimizer=adam",
            "distill.outer_steps=100", "distill.checkpoint_every=5", "distill.seq_len=8", "distill.real_batch_size=8",
            "threads=1", f"out={out}"]


def test_a_distillation_killed_with_sigkill_resumes_and_matches_an_uninterrupted_run(tiny_model_dirs, tiny_task_dir,
                                                                                    tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(tiny_model_dirs, tiny_task_dir, killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / checkpoint.FILE).exists():  # killed as soon as a checkpoint is on disk
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "meta.json").exists(), "killed before the artefact was written"
    step = int(load_metadata(killed / checkpoint.FILE)["step"])
    assert 5 <= step < 100

    rerun = subprocess.run(command(tiny_model_dirs, tiny_task_dir, killed), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"resuming from outer step {step} of 100" in rerun.stdout
    assert not (killed / checkpoint.FILE).exists()
    # The uninterrupted run in this process (one start-up less): the same job, other folder, same thread count.
    distill_task(compose("config", [*command(tiny_model_dirs, tiny_task_dir, tmp_path / "whole")[3:]]))
    resumed_files, whole_files = load_file(killed / "embeddings.safetensors"), load_file(tmp_path / "whole" / "embeddings.safetensors")
    assert resumed_files.keys() == whole_files.keys()
    for name, tensor in whole_files.items():
        assert torch.equal(resumed_files[name], tensor), name
    assert DistilledSet.load(killed).meta["outer_loss"] == DistilledSet.load(tmp_path / "whole").meta["outer_loss"]


def load_metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()
