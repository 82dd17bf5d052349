"""The run config: a tree of small dataclasses, loaded from YAML with `--set key=value` overrides, validated."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .config import ModelConfig
from .data.config import DataConfig
from .data.shapes import dataset_shape
from .effect import Unread, check_effect, chosen, note, own_keys_unread
from .errors import ConfigError, choices_error
from .feasibility import train_count
from .flops import forward_flops
from .overrides import apply_overrides, get_dotted, set_dotted
from .schedules import ScheduleConfig, cycles_momentum, total_steps
from .values import check_fields, check_range, read_yaml

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16", "fp64")
FAST_PATHS = ("auto", "eager", "graph", "compile")
BN_MODES = ("train", "eval_after_first_eval")
BEST_ON = ("val", "test")
SEED_MAX = 2**63 - 1   # a data stream's seed is taken mod 2**63 (data/streams.py); torch's seeds end at 2**64
# optimizer keys that one kind of optimizer uses: for another, they are not read
OPTIM_OWN_KEYS = {"momentum": ("sgd",), "nesterov": ("sgd",), "betas": ("adam", "adamw")}


def check_precision(value: Any, key: str = "precision") -> None:
    """Refuse a precision that is none of ``PRECISIONS`` (``key`` names where it was given): fp16 with the reason,
    another with the choices."""
    if value == "fp16":
        raise ConfigError(f"{key} fp16 is not supported: the training step has no loss scaling, so fp16 gradients "
                          f"would underflow; use bf16 (same speed on CUDA), fp32, fp64 or auto")
    if value not in PRECISIONS:
        raise choices_error(key, value, PRECISIONS)


@dataclass
class OptimConfig:
    name: str = "sgd"                 # sgd | adam | adamw
    lr: float = 0.1
    momentum: float = 0.9             # sgd
    nesterov: bool = False            # sgd
    weight_decay: float = 1e-4
    betas: list[float | None] = field(default_factory=lambda: [0.9, 0.999])  # adam / adamw; [null, b2]: the
                                      # first from a one-cycle schedule's cycled momentum (schedule.cycle_momentum)

    def validate(self) -> None:
        check_fields(self, "optim.", choices={"name": OPTIMIZERS})
        check_range("optim.lr", self.lr, low=0, low_open=True)
        check_range("optim.weight_decay", self.weight_decay, low=0)
        check_range("optim.momentum", self.momentum, low=0, high=1)
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2 or self.betas[1] is None:
            raise ConfigError(f"optim.betas must be two numbers in [0, 1) (the first null where the schedule cycles "
                              f"it), got {self.betas!r}")
        for b in self.betas:
            check_range("optim.betas", b, low=0, high=1, high_open=True)

    def unread(self) -> dict[str, Unread]:
        """Another optimizer's keys (key → why)."""
        return own_keys_unread(self, "name", OPTIM_OWN_KEYS, "optim.")


@dataclass
class RunConfig:
    name: str = "run"                 # used for the run directory and the W&B run
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch_size: int = 128
    eval_batch_size: int = 500
    seed: int = 0
    device: str = "auto"              # auto (cuda > npu > mps > cpu) | cpu | cuda | cuda:1 | mps | npu
    precision: str = "auto"           # auto (bf16 autocast on cuda/npu, fp32 elsewhere) | fp32 | bf16 | fp64
    fast: str = "auto"                # auto (CUDA graph on cuda; torch.compile for a long CPU run) | eager | graph | compile
    channels_last: bool = True        # on cuda
    log_every: int = 50               # iterations between train-metric / probe logs
    log_per_epoch: int | None = None  # instead of log_every: this many evenly spaced logs an epoch (seed 002: 5)
    eval_every: float = 1             # evaluate val/test every this many schedule units (epoch or iter)
    probes: bool = True               # per-layer / per-block gradient norms every step
    checkpoint: bool = True           # last.pt / best.pt
    checkpoint_every: float = 0       # also keep epoch_NNN.pt (step_NNNNNNN.pt) every this many schedule units; 0: off
    label_smoothing: float = 0.0
    bn_mode: str = "train"            # train | eval_after_first_eval: from the first evaluation on, train with the model
                                      # in eval mode (BatchNorm uses its running statistics and stops updating them)
    best_on: str = "val"              # val | test: the split best.pt is picked on; test is optimistic (the summary says so)

    SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "schedule": ScheduleConfig}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_precision(self.precision)
        check_fields(self, choices={"fast": FAST_PATHS, "bn_mode": BN_MODES, "best_on": BEST_ON})
        self.model.validate()
        self.data.validate()
        self.optim.validate()
        self.schedule.validate()
        cycled = cycles_momentum(self.schedule)  # it sets the momentum
        momentum = "schedule.max_momentum" if cycled else "optim.momentum"
        if self.optim.betas[0] is None and not cycled:
            raise ConfigError(f"optim.betas {self.optim.betas!r}: a null first beta needs schedule.cycle_momentum true "
                              f"(it then cycles from schedule.max_momentum); give the first beta a number")
        if self.optim.nesterov and (self.schedule.max_momentum if cycled else self.optim.momentum) == 0:
            raise ConfigError(f"optim.nesterov needs a momentum but {momentum} is 0; give {momentum} > 0 or "
                              f"optim.nesterov: false")
        for key in ("batch_size", "eval_batch_size", "log_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if not isinstance(self.eval_every, (int, float)) or self.eval_every <= 0:
            raise ConfigError(f"eval_every must be positive, got {self.eval_every!r}")
        if self.log_per_epoch is not None and (not isinstance(self.log_per_epoch, int)
                                               or isinstance(self.log_per_epoch, bool) or self.log_per_epoch < 1):
            raise ConfigError(f"log_per_epoch must be a positive integer or null, got {self.log_per_epoch!r}")
        every = self.checkpoint_every
        if not isinstance(every, (int, float)) or isinstance(every, bool) or every < 0:
            raise ConfigError(f"checkpoint_every must be a number >= 0 (schedule units; 0: off), got {every!r}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        check_range("seed", self.seed, low=0, high=SEED_MAX)
        check_range("label_smoothing", self.label_smoothing, low=0, high=1, high_open=True)

    def unread(self) -> dict[str, Unread]:
        """Every key this config's choices do not read, dotted (key → why): the sections' own, what a one-cycle
        schedule's cycled momentum overwrites (SGD's momentum, Adam's first beta), the model's channels and classes
        that the dataset sets, and log_every beside log_per_epoch or past the evaluation interval."""
        out = {f"{name}.{key}": why for name in self.SECTIONS for key, why in getattr(self, name).unread().items()}
        if cycles_momentum(self.schedule):
            if self.optim.name == "sgd":
                out["optim.momentum"] = Unread("schedule.cycle_momentum false, got true",
                                               "the schedule cycles it from schedule.max_momentum")
            else:
                out["optim.betas"] = Unread("schedule.cycle_momentum false to set the first beta, got true",
                                            "the schedule cycles it from schedule.max_momentum; write optim.betas "
                                            "[null, BETA2] to set the second alone", runs=lambda b: [None, b[1]])
        out.update(self._set_by_dataset())
        interval = self.eval_interval()
        if self.log_per_epoch is not None:
            out["log_every"] = Unread(f"log_per_epoch null, got {self.log_per_epoch!r}", "log_per_epoch logs instead")
        elif interval is not None:   # the engine logs at least once an evaluation interval
            unit = self.schedule.unit
            out["log_every"] = Unread(f"at most the evaluation interval, got eval_every {self.eval_every!r} {unit}"
                                      + (f" = {interval} steps" if unit == "epoch" else ""),
                                      f"training metrics are logged at every evaluation: write log_every {interval} "
                                      f"or less", runs=lambda every: min(every, interval))
        return out

    def model_on_dataset(self) -> tuple[ModelConfig, int | None]:
        """(model, image side in pixels) as a run of this config trains them, known without loading the dataset:
        the model with the dataset's channels and classes (``ModelConfig.on_images``) and ``data.resize`` or the
        dataset's image size. Where the dataset's shape is known only once it loads (an ImageFolder tree, a
        plugin's dataset; ``data.shapes``), the model as written and ``data.resize`` (None if not given)."""
        shape = dataset_shape(self.data)
        if shape is None:
            return self.model, self.data.resize
        return self.model.on_images(shape.channels, shape.classes), self.data.resize or shape.image_size

    def eval_interval(self) -> int | None:
        """Steps between evaluations, as the engine counts them; None where an epoch's steps are known only once the
        dataset loads."""
        if self.schedule.unit == "iter":
            return max(1, round(self.eval_every))
        planned = self.planned_steps()
        return None if planned is None else max(1, round(self.eval_every * planned[0]))

    def planned_steps(self) -> tuple[int, int] | None:
        """(steps per epoch, training steps in all) as the engine counts them, known without loading the dataset
        (``data.shapes``); None where the dataset's size is known only once it loads."""
        shape = dataset_shape(self.data)
        if shape is None:
            return None
        per_epoch = max(1, train_count(shape.n_train, self.data.val_size) // self.batch_size)
        return per_epoch, total_steps(self.schedule, per_epoch)

    def planned_flops(self) -> float | None:
        """FLOPs of a whole run (``flops``: a multiply-add is 2): training, 3 × the forward FLOPs × batch × steps
        (a backward pass costs about two forwards), and evaluations, the forward FLOPs × the test and val images ×
        the evaluations. None where the dataset's shape is known only once it loads."""
        shape, planned = dataset_shape(self.data), self.planned_steps()
        if shape is None or planned is None:
            return None
        steps = planned[1]
        model, size = self.model_on_dataset()
        forward = forward_flops(model, size)
        evaluated = shape.n_test + shape.n_train - train_count(shape.n_train, self.data.val_size)
        return 3.0 * forward * self.batch_size * steps + forward * evaluated * math.ceil(steps / self.eval_interval())

    def _set_by_dataset(self) -> dict[str, Unread]:
        """model.in_channels and model.num_classes, which the dataset sets: a written value is read only where it is
        the dataset's, known without loading it (``data.shapes``); where the dataset's shape is known only once it
        loads (an ImageFolder tree, a plugin's dataset), none is."""
        shape = dataset_shape(self.data)
        name = self.data.name
        out = {}
        for key, what, source in (("in_channels", "channels", "data.synthetic.channels"),
                                  ("num_classes", "classes", "data.synthetic.num_classes")):
            if shape is None:
                out[f"model.{key}"] = Unread(f"a dataset whose {what} are known before it loads, got data.name "
                                             f"{name!r}", f"the dataset sets it as it loads: drop model.{key}")
                continue
            value = shape.channels if key == "in_channels" else shape.classes
            got = f"{source} {value}" if name == "synthetic" else f"data.name {name!r} with {value}"
            out[f"model.{key}"] = Unread(f"a dataset with that many {what}, got {got}",
                                         f"the dataset sets it: drop model.{key}, or write {value}",
                                         runs=lambda _, v=value: v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key not in valid:
                raise choices_error("config key", key, valid)
            section = cls.SECTIONS.get(key)
            if section is not None:
                if isinstance(value, section):
                    kwargs[key] = value
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"{key} must be a mapping, got {value!r}")
                kwargs[key] = _section_from_dict(section, key, value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else (
                dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
        return out


def _section_from_dict(section: type, name: str, d: dict[str, Any]) -> Any:
    if hasattr(section, "from_dict"):
        return section.from_dict(d)
    valid = [f.name for f in dataclasses.fields(section)]
    for key in d:
        if key not in valid:
            raise choices_error(f"{name} key", key, valid)
    try:
        return section(**d)
    except TypeError as e:
        raise ConfigError(f"{name}: {e}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    loaded = read_yaml(path)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """A run config from YAML (or the defaults) plus `--set key=value` overrides, every key they write read by it
    (``effect.check_effect``): a ``--set`` key nothing reads is refused, and so is a file's key its own choices leave
    unread; one a ``--set`` left unread is dropped with a note. Of a file that writes every key, a run's config.yaml,
    only the ``--set`` keys count."""
    d = load_yaml(path) if path else {}
    cfg = RunConfig.from_dict(apply_overrides(d, overrides))
    for text in check_effect(cfg, chosen(d, RunConfig().to_dict()), sets=apply_overrides({}, overrides),
                             before=lambda: RunConfig.from_dict(d), source=str(path)):
        note(text)
    return cfg


def resolved_dict(cfg: RunConfig, model: "ModelConfig | None" = None) -> dict[str, Any]:
    """``cfg`` as a plain dict with the model resolved (block, stem, stages, widths filled in from the depth and
    family), as `train` writes it to config.yaml; ``model``: the model with the dataset's channels and classes set
    (default ``cfg.model``, whose channels and classes are the config's)."""
    d = cfg.to_dict()
    d["model"] = (model or cfg.model).resolved().to_dict()
    return d


def canonical_dict(cfg: RunConfig) -> dict[str, Any]:
    """What ``cfg`` runs: ``resolved_dict`` (auto values, stages and widths filled in) with every key its choices do
    not read at its default (a key another part overwrites: at what runs in its place, ``Unread.runs``). Two configs
    with one canonical dict (compared with ``values.freeze``) build the same network and train it the same way."""
    d = resolved_dict(cfg)
    defaults = RunConfig().to_dict()
    for key, why in cfg.unread().items():
        set_dotted(d, key, why.runs(get_dotted(d, key)) if why.runs else get_dotted(defaults, key))
    return d
