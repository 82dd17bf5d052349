"""`resnet-ablate probe`: per-layer gradient norms at initialisation, plain vs residual, for a list of depths.
No training: the cheapest view of why deep plain nets degrade."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from .data import EvalLoader, load_dataset, normalization
from .devices import resolve_device
from .model import build_model
from .grad_probes import GradProbe
from .run_config import load_run_config


def probe_depths(depths: Sequence[int], overrides: Sequence[str] = (), *, seeds: int = 3, batch_size: int = 128,
                 device: str = "auto", shortcuts: Sequence[str] = ("none", "identity")) -> pd.DataFrame:
    cfg = load_run_config(None, overrides)
    dev = resolve_device(device)
    data = load_dataset(cfg.data)
    mean, std = normalization(cfg.data, data)
    loader = EvalLoader(data.train.images[:batch_size], data.train.labels[:batch_size], batch_size=batch_size,
                        mean=mean, std=std, normalize=cfg.data.normalize, out_size=cfg.data.resize, device=dev)
    x, y = next(iter(loader))
    rows = []
    for depth in depths:
        for shortcut in shortcuts:
            model_cfg = dataclasses.replace(cfg.model, depth=depth, shortcut=shortcut,
                                            stages=None).on_images(data.in_channels, data.num_classes)
            for seed in range(seeds):
                torch.manual_seed(seed)
                model = build_model(model_cfg).to(dev).train()
                probe = GradProbe(model)
                F.cross_entropy(model(x), y).backward()
                probe.accumulate()
                norms = probe.read_and_reset(1)[0]["grad_norm"]
                r = model_cfg.resolved()
                for i, (layer, value) in enumerate(norms.items()):
                    rows.append({"family": r.family, "depth": depth, "shortcut": shortcut,
                                 "activation": r.activation, "seed": seed, "layer_index": i, "layer": layer,
                                 "grad_norm": value})
    table = pd.DataFrame(rows)
    keys = ["family", "depth", "shortcut", "activation", "layer_index", "layer"]
    return table.groupby(keys, as_index=False, sort=False)["grad_norm"].mean()
