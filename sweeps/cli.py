"""The `sweep` and `studies` commands' entry point under its old name: an install made before the commands moved to
``sweeps.launch.cli`` names ``sweeps.cli:register`` in its entry-point metadata until it is reinstalled."""
from .launch.cli import register

__all__ = ["register"]
