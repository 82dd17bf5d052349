"""Device choice and mixed precision: auto picks cuda > npu > mps > cpu. torch_npu is imported only on request."""
from __future__ import annotations

import contextlib
import importlib

import torch

from .errors import ConfigError

NPU_HELP = ("device npu needs torch-npu with Huawei CANN installed (pip install 'resnet-ablate[npu]'); "
            "if a broken torch-npu install breaks `import torch`, set TORCH_DEVICE_BACKEND_AUTOLOAD=0")


def npu_available() -> bool:
    try:
        importlib.import_module("torch_npu")
    except Exception:  # noqa: BLE001 - any import failure means no NPU
        return False
    return bool(getattr(torch, "npu", None) and torch.npu.is_available())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if npu_available():
            return torch.device("npu")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: auto or cpu")
    if kind == "npu" and not npu_available():
        raise ConfigError(NPU_HELP)
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available; use device: auto or cpu")
    if kind not in ("cpu", "cuda", "npu", "mps"):
        raise ConfigError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, cuda:N, npu, npu:N, mps")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision. auto = bf16 on cuda/npu, fp32 elsewhere."""
    if precision == "auto":
        return torch.bfloat16 if device.type in ("cuda", "npu") else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def param_dtype(precision: str) -> torch.dtype:
    return torch.float64 if precision == "fp64" else torch.float32


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    # No weight-cast cache: a captured CUDA graph must re-cast the weights the optimizer updated in place.
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)
