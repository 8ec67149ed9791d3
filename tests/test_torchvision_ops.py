"""The CUDA-only torchvision wheel imports on CPU torch once condense is imported, and so do model classes."""

import subprocess
import sys


def test_torchvision_avalanche_and_transformers_import_after_condense():
    code = (
        "import condense, torchvision, avalanche\n"
        "from transformers import BertModel\n"
        "from condense._torchvision_ops import register_missing_torchvision_ops\n"
        "register_missing_torchvision_ops()\n"  # a second call is harmless
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
