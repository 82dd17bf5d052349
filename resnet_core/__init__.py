"""resnet_core: residual networks from pluggable parts, the training engine, probes and the run record."""
from .config import ModelConfig
from .errors import ConfigError
from .model import ResNet, build_model, count_params, fuse_state_dicts, load_member_state_dict, member_state_dict

__all__ = ["ModelConfig", "ConfigError", "ResNet", "build_model", "count_params", "fuse_state_dicts",
           "load_member_state_dict", "member_state_dict"]
