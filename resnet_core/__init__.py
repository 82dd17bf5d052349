"""resnet_core: residual networks from pluggable parts, the training engine, probes and the run record."""
from .config import ModelConfig
from .errors import ConfigError
from .model import ResNet, build_model, count_params, fuse_state_dicts, load_member_state_dict, member_state_dict

__all__ = ["ModelConfig", "ConfigError", "ResNet", "build_model", "count_params", "fuse_state_dicts",
           "load_member_state_dict", "member_state_dict"]

_ENGINE = ("train", "train_members", "RunResult")


def __getattr__(name: str):
    """`resnet_core.train(config, run_dir)` (resnet_core/engine.py), imported on first use so that models stay light."""
    if name in _ENGINE:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
