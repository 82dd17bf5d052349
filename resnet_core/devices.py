"""Device choice and mixed precision: auto picks cuda > npu > mps > cpu. torch_npu is imported only on request."""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

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


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware: x86 AVX512-BF16 or AMX-BF16, Arm's BF16 extension.

    Detected from the instruction set (torch's own CPU-feature probe on x86, /proc/cpuinfo's `bf16` flag on Arm),
    never assumed: elsewhere oneDNN emulates bf16 through fp32 and autocast makes a CPU step slower, not faster.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    cpu = getattr(torch, "cpu", None)
    for name in probes:
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # noqa: BLE001 - a probe that cannot run means no evidence of bf16
            continue
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return any(line.startswith("Features") and " bf16" in f" {line.split(':', 1)[-1]}"
                   for line in flags.splitlines())
    return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision.

    auto = bf16 on cuda/npu, bf16 on a CPU with native bf16 (`cpu_has_native_bf16`; about 2x the fp32 step on
    AVX512-BF16/AMX), fp32 elsewhere (mps, and CPUs that would emulate bf16). Weights, optimizer state, losses and
    logits stay fp32 either way (autocast, not a bf16 model).
    """
    if precision == "auto":
        if device.type in ("cuda", "npu"):
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def precision_name(amp: torch.dtype | None, dtype: torch.dtype) -> str:
    """What a run computes in, for its record: `bf16` / `fp16` (autocast over fp32 weights), `fp32` or `fp64`."""
    if amp is not None:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]
    return "fp64" if dtype == torch.float64 else "fp32"


def uses_channels_last(requested: bool, device: torch.device, dtype: torch.dtype) -> bool:
    """channels_last where it pays: on CUDA, and on a CPU for fp32 weights (oneDNN's NHWC kernels: about +20 %
    img/s on a ResNet-20 step in fp32 and in bf16 autocast); never for fp64 (no oneDNN kernels) or on MPS/NPU."""
    if not requested:
        return False
    return device.type == "cuda" or (device.type == "cpu" and dtype == torch.float32)


# Training work (FLOPs: 3 × forward × images) from which `fast: auto` compiles a CPU run. torch.compile's one-off
# build of the train and eval kernels took 5–50 s on this project's 2-core machine (ResNet-20/56, warm/cold inductor
# cache) and ran the step 1.25–1.35× the eager bf16 channels_last step (issue 15's bench); 2e13 FLOPs is about one
# CIFAR-10 epoch of ResNet-56 or three of ResNet-20 (minutes per core), where the saving outweighs the build. The
# quickstart (about 1e12) and the tests stay eager.
CPU_COMPILE_PAYS_FLOPS = 2e13


def cpu_compiler() -> str | None:
    """The C++ compiler torch.compile (inductor) builds CPU kernels with, if it is on PATH: $CXX, else g++ (clang++
    on macOS), as inductor looks for it. None on Windows (inductor needs an MSVC environment) and where none is found."""
    if sys.platform == "win32":
        return None
    return shutil.which(os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++"))


# Flags added to inductor's C++ compiler command where the compiler needs them (docs/fast_paths.md). GCC 12.2 at -O3
# clones `at::vec::transpose_mxn<BFloat16>` (IPA-CP, `.constprop`) in a BatchNorm-backward kernel that calls it 3 times,
# and the clone copies stale stack memory instead of the transposed tile: the compiled bf16 step of a CIFAR ResNet-20
# (option A) computed NaN from step 1 on a Xeon with AMX (2026-12-06). -fno-ipa-cp-clone keeps -O3 and drops the clone.
GCC_WORKAROUND_FLAGS = ("-fno-ipa-cp-clone",)


def _is_gcc(compiler: str) -> bool:
    """Whether `<compiler path> --version` names GCC (g++), not clang (whose `clang++` also ends in g++)."""
    try:
        first = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                               timeout=60).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    line = first[0].lower() if first else ""
    return "clang" not in line and any(word in line for word in ("g++", "gcc", "gnu"))


def cpu_compiler_command() -> str | None:
    """The command inductor compiles CPU kernels with: `cpu_compiler()` plus `GCC_WORKAROUND_FLAGS` for GCC; None
    where there is no compiler."""
    compiler = cpu_compiler()
    if compiler is None:
        return None
    return shlex.join([compiler, *GCC_WORKAROUND_FLAGS]) if _is_gcc(compiler) else shlex.quote(compiler)


def configure_cpu_compiler() -> str | None:
    """Point torch.compile's CPU backend (inductor's `cpp.cxx`, a command that may carry flags) at
    `cpu_compiler_command()`, before the first build; the flags are part of inductor's kernel cache key, so a kernel
    built without them is never reused. Returns the command (None: left as inductor's default)."""
    command = cpu_compiler_command()
    if command is not None:
        import torch._inductor.config as inductor_config  # inductor's public switchboard; imported only to compile

        inductor_config.cpp.cxx = command
    # A CPU build looks for CUDA headers and warns "No CUDA runtime is found, using CUDA_HOME=…": noise on a CPU run
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return command


def compile_draws_as_eager() -> None:
    """Make torch.compile's kernels draw random numbers as eager torch does (inductor's ``fallback_random``): a part
    that draws (a drop-path) drew others compiled, so the guard sent every compiled run of it back to eager (an
    explicit ``fast: compile`` stopped). No built-in part draws: their kernels are unchanged."""
    import torch._inductor.config as inductor_config  # inductor's public switchboard; imported only to compile

    inductor_config.fallback_random = True


def cpu_compile_pays(train_flops: float) -> bool:
    """Whether `fast: auto` compiles a CPU run of `train_flops` training FLOPs: a compiler is there and the run is
    long enough (`CPU_COMPILE_PAYS_FLOPS`) to repay the build."""
    return train_flops >= CPU_COMPILE_PAYS_FLOPS and cpu_compiler() is not None


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_cpu_threads(n: int) -> None:
    """Torch's intra-op CPU threads, ``n``. A change drops what torch.compile built in this process: inductor bakes
    the thread count into its CPU kernels (``#pragma omp parallel num_threads(n)``) and dynamo does not guard on it,
    so a kernel built at one count would go on running at that count, and give its round-off, under another."""
    if n == torch.get_num_threads():
        return
    torch.set_num_threads(n)
    dynamo = sys.modules.get("torch._dynamo")   # not loaded: nothing was compiled in this process
    if dynamo is not None:
        dynamo.reset()


def param_dtype(precision: str) -> torch.dtype:
    return torch.float64 if precision == "fp64" else torch.float32


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    # No weight-cast cache: a captured CUDA graph must re-cast the weights the optimizer updated in place.
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def rng_state(device: torch.device) -> list[torch.Tensor]:
    """The state of the torch generators a step on ``device`` draws from: the CPU's, and the device's own."""
    module = None if device.type == "cpu" else getattr(torch, device.type, None)
    return [torch.get_rng_state()] + ([module.get_rng_state(device)] if module is not None else [])


def set_rng_state(device: torch.device, state: list[torch.Tensor]) -> None:
    """Put back what `rng_state` saved."""
    torch.set_rng_state(state[0])
    if len(state) > 1:
        getattr(torch, device.type).set_rng_state(state[1], device)


def make_current(device: torch.device | str) -> None:
    """Make `device` the current device of this process (cuda:N, npu:N), before any stream, graph or allocation.

    CUDA streams, graphs and `torch.cuda.*` calls without an explicit device use the current device (GPU 0 unless
    set): a worker given cuda:1 must make it current first. A no-op for cpu, mps and an index-less device."""
    device = torch.device(device)
    if device.index is None:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif device.type == "npu":
        torch.npu.set_device(device)  # type: ignore[attr-defined]


def tf32_policy(precision: str, device: torch.device) -> bool:
    """Whether float32 matmuls/convolutions may use TF32 (10-bit mantissa) on this run.

    Policy: `precision: fp32` means IEEE float32 (TF32 off, although cuDNN's default allows it for convolutions);
    under bf16 autocast (`auto` or `bf16` on CUDA) the few float32 ops left may use TF32; fp64 and non-CUDA
    devices: not applicable (False). The engine applies it to both switches and records it in summary.json."""
    return device.type == "cuda" and autocast_dtype(precision, device) is not None


def apply_cuda_math(tf32: bool, static_shapes: bool) -> None:
    """Set the process-wide CUDA math switches for one run (set every time: a previous trial's must not leak).

    `static_shapes`: the step is a captured graph (fixed shapes), so let cuDNN benchmark its algorithms once."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = static_shapes
