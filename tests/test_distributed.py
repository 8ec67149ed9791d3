"""One distillation across two processes (torchrun, gloo) ends with the artefact one process makes, and resumes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from condense.artifact.distilled_set import DistilledSet
from condense.config.parsing import compose
from condense.distill import checkpoint
from condense.distill.loop import distill, real_data
from condense.distill.start import initial_set
from condense.jobs.distill_task import distill_task, job_encoder, load_task_config, task_labels

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
SET_TENSORS = ("embeddings", "soft_labels", "inner_lrs")


def overrides(tiny_model_dirs, tiny_task_dir, out, *extra) -> list[str]:
    # 7 real rows a step: the two processes hold shares of different sizes (4 and 3).
    return ["task=local", f"task.path={tiny_task_dir}", f"model.name={tiny_model_dirs['bert']}", "eval=smoke",
            "distill=all", "distill.inner_steps=2", "distill.outer_steps=6", "distill.checkpoint_every=3",
            "distill.seq_len=8", "distill.real_batch_size=7", "distill.lr_inputs=0.05", "device=cpu", "threads=1",
            f"out={out}", *extra]


def torchrun(arguments: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "condense.distill", *arguments]
    return subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


def assert_same_set(a: DistilledSet, b: DistilledSet) -> None:
    for name in SET_TENSORS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-5, msg=name)
    assert torch.equal(a.token_ids, b.token_ids) and a.texts == b.texts
    torch.testing.assert_close(torch.tensor(a.meta["outer_loss"]), torch.tensor(b.meta["outer_loss"]), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def one_process(tiny_model_dirs, tiny_task_dir, tmp_path_factory):
    """The same job in this process: the reference every multi-process run must end with."""
    out = tmp_path_factory.mktemp("one-process")
    distill_task(compose("config", overrides(tiny_model_dirs, tiny_task_dir, out)))
    return DistilledSet.load(out)


@pytest.mark.parametrize("micro_batch", [None, 2])
def test_two_processes_end_with_the_artefact_of_one(tiny_model_dirs, tiny_task_dir, tmp_path, one_process, micro_batch):
    extra = [] if micro_batch is None else [f"distill.real_micro_batch={micro_batch}"]
    out = tmp_path / "two"
    run = torchrun(overrides(tiny_model_dirs, tiny_task_dir, out, *extra))
    assert run.returncode == 0, run.stdout[-4000:]
    assert "one distillation across 2 processes (gloo backend)" in run.stdout
    assert run.stdout.count("saved the distilled set to") == 1, "only the main process writes"
    two = DistilledSet.load(out)
    assert_same_set(two, one_process)
    assert set(two.metrics["learned"]) >= {"distilled", "random"}, "the main process evaluated the set"
    assert not (out / checkpoint.FILE).exists()


def test_two_processes_resume_a_checkpoint(tiny_model_dirs, tiny_task_dir, tmp_path, one_process):
    out = tmp_path / "resumed"
    job = compose("config", overrides(tiny_model_dirs, tiny_task_dir, out))
    # The state after 3 outer steps, saved as a stopped run of this job leaves it.
    encoder = job_encoder(job)
    task = load_task_config(job.task)
    labels = task_labels(task.train, encoder)
    real = real_data(encoder, task, labels, None, job.task.max_length, job.distill)
    start = initial_set(encoder, task.train["text"], labels, task.label_names, job.distill.ipc, job.distill.seq_len,
                        job.distill.seed)
    states = []
    distill(encoder, real, start, job.distill, on_checkpoint=states.append, progress=False)
    out.mkdir()
    checkpoint.save(out / checkpoint.FILE, states[0], checkpoint.run_identity(job, encoder.device))

    run = torchrun(overrides(tiny_model_dirs, tiny_task_dir, out))
    assert run.returncode == 0, run.stdout[-4000:]
    assert "resuming from outer step 3 of 6" in run.stdout
    assert_same_set(DistilledSet.load(out), one_process)
