"""Training callbacks the tests share (tests/ is on sys.path through pyproject's ``pythonpath``)."""
from __future__ import annotations


class InterruptAt:
    """Raise KeyboardInterrupt at the eval of ``step``, after its checkpoint was written, as Ctrl-C would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_eval(self, member: int, step: int, metrics: dict) -> bool:
        if step == self.step:
            raise KeyboardInterrupt
        return False
