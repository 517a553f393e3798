"""``RunIf``: skip a test the machine cannot run, saying why (after lightning-hydra-template's helper)."""
from __future__ import annotations

import pytest
import torch


def RunIf(min_gpus: int = 0) -> pytest.MarkDecorator:
    """Skip unless at least `min_gpus` CUDA devices are visible (``trainer=gpu`` needs 1, ``trainer=ddp`` on
    GPUs 2). CI machines without a GPU skip these; a GPU machine runs them with the rest of ``make test``."""
    found = torch.cuda.device_count()
    return pytest.mark.skipif(found < min_gpus, reason=f"needs {min_gpus} CUDA GPU(s), {found} visible")
