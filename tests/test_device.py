"""The device resolver and the precision context."""

import pytest
import torch

from condense.config.device import autocast, resolve_device


def test_auto_is_cuda_only_where_cuda_exists(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device='cuda': this machine has no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"device='cuda:1': only 1 CUDA device"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match=r"device='tpu': choose one of"):
        resolve_device("tpu")


def test_fp32_leaves_numbers_alone_and_bf16_autocasts():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(torch.device("cpu"), "fp32"):
        assert torch.equal(a @ b, torch.mm(a, b)) and (a @ b).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"precision='fp16': choose one of \['fp32', 'bf16'\]"):
        autocast(torch.device("cpu"), "fp16")
