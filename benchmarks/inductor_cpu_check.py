"""Does torch.compile's CPU backend compute the right training step on this machine, with and without our compiler
flags? A standalone reproducer of the fault in docs/fast_paths.md.

    python benchmarks/inductor_cpu_check.py            # both builds, each in a fresh inductor cache
    python benchmarks/inductor_cpu_check.py --depth 56 --threads 1

For each build (inductor's default compiler command, then `devices.cpu_compiler_command()`), it compiles the first
training step of a CIFAR ResNet (option A, bf16 autocast, channels_last, 32×32, batch 128), compares its loss and
every gradient with the eager fp32 reference through the fast-path guard's rule (`fast_guard.compare`, with the eager
bf16 step as the noise witness), and lists the IPA-CP clones (`.constprop`) of `at::vec::transpose_mxn` in the
kernels it built (`nm -C`). On 2026-12-06 a Xeon with AMX and g++ 12.2 gave NaN gradients with the default build;
an AMD EPYC (AVX512-BF16, no AMX) with the same g++ computed the right numbers but held the same clone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, subprocess, sys, torch
from pathlib import Path
from resnet_core import fast_guard
from resnet_core.config import ModelConfig
from resnet_core.devices import cpu_compiler_command
from resnet_core.model import build_model

depth, threads, build, cache = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
torch.set_num_threads(threads)
if build == "workaround":
    import torch._inductor.config as inductor_config
    inductor_config.cpp.cxx = cpu_compiler_command()
torch.manual_seed(0)
model = build_model(ModelConfig(depth=depth, shortcut="identity")).to(memory_format=torch.channels_last)
x = torch.randn(128, 3, 32, 32).to(memory_format=torch.channels_last)
y = torch.randint(0, 10, (128,))
cpu = torch.device("cpu")
exact = fast_guard.step_outputs(model, x.contiguous(), y, amp=None, device=cpu)
witness = fast_guard.step_outputs(model, x.contiguous(), y, amp=torch.bfloat16, device=cpu)
compiled = fast_guard.step_outputs(torch.compile(model), x, y, amp=torch.bfloat16, device=cpu)
compiled = fast_guard.Outputs(compiled.loss, {k.removeprefix("_orig_mod."): v for k, v in compiled.tensors.items()})
problem = fast_guard.compare([compiled], fast_guard.Reference([exact], [witness]))
clones = []
for so in cache.rglob("*.so"):
    symbols = subprocess.run(["nm", "-C", str(so)], capture_output=True, text=True).stdout
    clones += [f"{so.name}: {ln.split(' t ')[-1]}" for ln in symbols.splitlines()
               if "transpose_mxn" in ln and ".constprop" in ln]
print(json.dumps({"build": build, "compiler": str(getattr(__import__("torch._inductor.config").
                  _inductor.config.cpp, "cxx")), "guard": problem or "agrees with the eager reference",
                  "clones": clones}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    for build in ("default", "workaround"):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache,
                   "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
            proc = subprocess.run([sys.executable, "-c", CHILD, str(args.depth), str(args.threads), build, cache],
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{build}: failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{build:<10} compiler {r['compiler']!r}: {r['guard']}; "
                  f"{len(r['clones'])} transpose_mxn clone(s){': ' + '; '.join(r['clones']) if r['clones'] else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
