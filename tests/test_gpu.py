"""The CUDA paths end to end on tiny models (skipped where no CUDA device exists; run them on a GPU machine)."""

import pytest
import torch

from condense.artifact.distilled_set import DistilledSet
from condense.config.parsing import compose
from condense.jobs.distill_task import distill_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("mode", ["distill=head", "distill=last_layer", "distill=all"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_tiny_distillation_runs_on_cuda(tiny_model_dirs, tiny_task_dir, tmp_path, mode, precision):
    job = compose("config", [
        "task=local", f"task.path={tiny_task_dir}", f"model.name={tiny_model_dirs['bert']}", "eval=smoke",
        "distill.outer_steps=4", "distill.seq_len=8", "distill.real_batch_size=8", "device=cuda",
        f"precision={precision}", f"out={tmp_path / 'run'}", mode,
    ])
    distilled = distill_task(job)
    assert distilled.embeddings.is_cuda
    loaded = DistilledSet.load(tmp_path / "run")  # saved from the GPU, read back on the host
    torch.testing.assert_close(loaded.embeddings, distilled.embeddings.cpu())
    assert set(loaded.metrics["learned"]) == {"distilled", "decoded", "random", "kcenters", "herding", "full"}


def test_attention_labels_and_checkpointed_unrolls_run_on_cuda(tiny_model_dirs, tiny_task_dir, tmp_path):
    job = compose("config", [
        "task=local", f"task.path={tiny_task_dir}", f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "distill=all",
        "distill.outer_steps=3", "distill.inner_steps=2", "distill.bptt=checkpoint", "distill.attention_labels=all_rows",
        "distill.seq_len=8", "distill.real_batch_size=8", "device=cuda", f"out={tmp_path / 'run'}",
    ])
    distilled = distill_task(job)
    assert distilled.attention_labels.is_cuda and distilled.inner.attention is not None
    loaded = DistilledSet.load(tmp_path / "run")
    torch.testing.assert_close(loaded.attention_labels, distilled.attention_labels.cpu())


def test_a_tiny_sequence_runs_on_cuda(tiny_sequence_overrides, tmp_path):
    pytest.importorskip("avalanche", reason="the continual harness needs avalanche-lib (not carried by gpu_check.sh)")
    from condense.jobs.sequence import run_sequence

    job = compose("run", [*tiny_sequence_overrides(tmp_path, seeds="[0]"), "device=cuda", "continual.scenarios=[task,class]"])
    results = run_sequence(job)
    # Every strategy of the defaults, in both scenarios: counted from the config, not a number to keep in step.
    assert len(results["runs"]) == 2 * len(job.continual.strategies) > 2
    assert {run["strategy"] for run in results["runs"]} == set(job.continual.strategies)


def test_a_resumed_distillation_on_cuda_ends_with_the_uninterrupted_tensors(tiny_bert, tmp_path):
    from condense.distill.loop import RealData, distill
    from condense.distill.start import initial_set
    from condense.models.encoders import load_encoder
    from condense.models.features import encode_tokens, tokenize

    encoder = load_encoder(tiny_bert.name, device=torch.device("cuda"))
    texts, labels = ["stocks market profit bank"] * 4 + ["football match goal team"] * 4, torch.tensor([0] * 4 + [1] * 4)
    tokens = tokenize(encoder, texts, 16)
    real = RealData(labels=labels.cuda(), features=encode_tokens(encoder, tokens), tokens=tokens)
    config = compose("config", ["distill=all", "distill.outer_steps=6", "distill.checkpoint_every=3",
                                "distill.seq_len=8", "distill.real_batch_size=4"]).distill
    start = initial_set(encoder, texts, labels, ["business", "sports"], 1, config.seq_len, 0)
    states = []
    whole = distill(encoder, real, start, config, on_checkpoint=states.append, progress=False)
    resumed = distill(encoder, real, start, config, resume=states[0], progress=False)
    for name in ("embeddings", "soft_labels", "inner_lrs", "token_ids"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name
    assert resumed.meta["outer_loss"] == whole.meta["outer_loss"]
