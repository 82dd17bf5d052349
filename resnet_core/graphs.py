"""The graph machinery of the engine's fast path, behind one small interface, with a CPU stand-in for CI.

The engine captures its whole training step once and replays it: a small ResNet's step is
launch-bound (ResNet-56 on an H100: about 4,700 img/s eager, 22,600 graphed). It asks a backend for three things:
`warmup(fn, iters)` (run the step a few times on a side stream, as CUDA graphs require before capture),
`capture(fn, watch)` (record the step; returns an object whose `replay()` runs it again) and `compile(model)`.

- `CudaGraphs(device)`: `torch.cuda.CUDAGraph` on the given GPU. Every stream and graph is created under a device
  guard for that GPU, so a worker given `cuda:1` never captures on the current device (GPU 0).
- `EmulatedGraphs()`: the stand-in, used only when the environment variable ``RESNET_ABLATE_EMULATE_CUDA_GRAPH=1``
  is set and the device is the CPU (the tests set it). Capture runs the step once (as a real capture may change
  host-side state, the engine must undo it), and `replay()` re-runs the captured function, which reads only the
  static input tensors, so the engine's warm-up, undo, static-input copying and replay logic all run in CI. A real
  graph replays the host values it saw at capture: the stand-in checks that the `watch()` values (the optimizer's
  host-side hyper-parameters) have not changed since capture and raises `HostValueChanged` if they have.

`graph_backend(device)` picks one (None: no graph path on this device).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Protocol

import torch

from .errors import GraphCaptureError  # noqa: F401 - raised by the engine; importable from here too

EMULATE_ENV = "RESNET_ABLATE_EMULATE_CUDA_GRAPH"


class HostValueChanged(RuntimeError):
    """A host-side value that a captured graph froze was changed after capture (the replay would ignore it)."""


class Replayable(Protocol):
    def replay(self) -> None: ...


class CudaGraphs:
    """Real CUDA graphs on one GPU."""
    emulated = False

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def guard(self) -> contextlib.AbstractContextManager:
        """Make this backend's GPU current for the duration (streams and graphs belong to the current device)."""
        return torch.cuda.device(self.device)

    def warmup(self, fn: Callable[[], None], iters: int) -> None:
        with self.guard():
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(iters):
                    fn()
            torch.cuda.current_stream(self.device).wait_stream(stream)

    def capture(self, fn: Callable[[], None], watch: Callable[[], Any] | None = None) -> Replayable:
        with self.guard():
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            return graph

    def compile(self, model: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(model, mode="max-autotune-no-cudagraphs")

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


class EmulatedGraph:
    def __init__(self, fn: Callable[[], None], watch: Callable[[], Any] | None) -> None:
        self.fn, self.watch = fn, watch
        self.frozen = watch() if watch is not None else None
        self.replays = 0

    def replay(self) -> None:
        if self.watch is not None and (now := self.watch()) != self.frozen:
            raise HostValueChanged(f"a host value changed after capture ({self.frozen!r} -> {now!r}); a CUDA graph "
                                   "would replay the captured one: keep it in a device tensor")
        self.fn()
        self.replays += 1


class EmulatedGraphs:
    """The CPU stand-in for CI (see the module docstring). `captures` counts the captures it made."""
    emulated = True

    def __init__(self) -> None:
        self.captures = 0

    def guard(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def warmup(self, fn: Callable[[], None], iters: int) -> None:
        for _ in range(iters):
            fn()

    def capture(self, fn: Callable[[], None], watch: Callable[[], Any] | None = None) -> EmulatedGraph:
        fn()  # the worst case of what a capture may change; the engine undoes it
        self.captures += 1
        return EmulatedGraph(fn, watch)

    def compile(self, model: torch.nn.Module) -> torch.nn.Module:
        return model  # no compiler in CI; the graph logic around it is the same

    def synchronize(self) -> None:
        pass


def emulating() -> bool:
    return os.environ.get(EMULATE_ENV, "") == "1"


def graph_backend(device: torch.device) -> CudaGraphs | EmulatedGraphs | None:
    """The graph backend for `device`: CUDA graphs on CUDA, the stand-in on the CPU when emulating, else None."""
    if device.type == "cuda":
        return CudaGraphs(device)
    if device.type == "cpu" and emulating():
        return EmulatedGraphs()
    return None
