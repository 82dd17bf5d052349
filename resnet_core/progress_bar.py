"""A tqdm progress bar as a training callback: steps done of the total (percentage, ETA), loss, error, img/s."""
from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


class ProgressBar:
    def __init__(self, member: int = 0) -> None:
        self.member = member
        self.bar: tqdm | None = None
        self.last = 0

    def on_start(self, member: int, config: dict[str, Any], run_dir: Any) -> None:
        if member == self.member:
            from .record import read_summary

            s = read_summary(run_dir) if run_dir is not None else {}  # the engine writes it first: total, start
            self.last = int(s.get("step") or 0)
            self.bar = tqdm(desc=config.get("name", "run"), unit="it", dynamic_ncols=True,
                            total=s.get("total_steps"), initial=self.last)

    def on_log(self, member: int, step: int, metrics: dict[str, float]) -> None:
        if member != self.member or self.bar is None:
            return
        self.bar.update(step - self.last)
        self.last = step
        self.bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", err=f"{metrics['train/error']:.1f}%",
                             img_s=f"{metrics['train/throughput']:.0f}", refresh=False)

    def on_eval(self, member: int, step: int, metrics: dict[str, float]) -> bool:
        if member == self.member and self.bar is not None and "test/error" in metrics:
            self.bar.write(f"step {step}: test error {metrics['test/error']:.2f}%"
                           + (f", val error {metrics['val/error']:.2f}%" if "val/error" in metrics else ""))
        return False

    def on_message(self, text: str) -> None:
        """A phase the run is in (a torch.compile build, a fast-path check), above the bar."""
        (self.bar.write if self.bar is not None else tqdm.write)(text)

    def on_end(self, member: int, summary: dict[str, Any]) -> None:
        if member == self.member and self.bar is not None:
            self.bar.total = summary.get("total_steps")
            self.bar.close()
            self.bar = None
