"""What a method is: `Method`, the declaration every file of `distill_lib.methods` makes, and
`RunRequest`, what the study asks a method to make a run from. No torch: a run's config is built
from the profile alone (a method that needs the model, e.g. its depth, imports it when called)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from distill_lib.names import UNSCORED_STRATEGIES
from distill_lib.run_config import HealingConfig, InitConfig, RunConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One run of a method, as the study resolved it from the profile."""

    study: object
    """The `Study` (its profile `study.cfg`, teacher depth, width target)."""
    name: str
    """The method or variant asked for: a variant's runs are named after it."""
    strategy: str
    seed: int
    train: TrainConfig
    """The student's training: the profile's, the variant's changes and budget, this method's
    objective and the seed."""
    teacher: Optional[str] = None
    """The teacher reference (None for a method that does not use the teacher)."""
    calibration_split: Optional[str] = None
    healing: Optional[HealingConfig] = None
    remove_every_tokens: Optional[int] = None
    """Gradual removal's interval."""

    @property
    def data(self):
        return self.study.cfg.data


@dataclasses.dataclass(frozen=True)
class Method:
    """A way to make a student. The defaults describe a student truncated from the teacher and
    trained with `objective`; a method that builds another model overrides `run_config`."""

    name: str
    label: str
    """How figures and tables name it."""
    objective: str
    """`TrainConfig.objective` of its runs (distill_lib.objectives)."""
    notebook: str
    """The notebook that trains its runs (distill_lib.catalog)."""
    order: int
    """Its place in listings and messages (the paper's methods first)."""
    color: Optional[str] = None
    """Its colour in every figure (None: the palette's next)."""
    uses_teacher: bool = True
    """Starts from the teacher's weights or reads it while training (from scratch does neither)."""
    variant_base: bool = False
    """A profile variant may change its training (the others build a different model)."""
    core: bool = True
    """In a profile's default `methods` (the paper's comparison); a method added later is opt-in."""
    init_kind: str = "truncate"
    """`InitConfig.kind` of its student, for the default `run_config`."""

    def run_config(self, req: RunRequest) -> RunConfig:
        """The teacher truncated by `req.strategy` (its layers, or their shapes re-initialised),
        then trained by `req.train`. Only a scored strategy reads calibration blocks: the others
        keep the hash they had before `calibration_split` existed."""
        cfg = req.study.cfg
        scored = req.strategy not in UNSCORED_STRATEGIES
        init = InitConfig(kind=self.init_kind, strategy=req.strategy, drop=cfg.drop,
                          calibration_split=req.calibration_split if scored else None)
        return RunConfig(name=f"{req.name}-{req.strategy}-s{req.seed}", data=req.data, init=init,
                         teacher=req.teacher, train=req.train, **({"healing": req.healing} if req.healing else {}))

    def base_training(self, cfg) -> TrainConfig:
        """The profile's training settings its runs (and its variants) start from."""
        return cfg.student_train

    def schedules(self, cfg) -> list:
        """The runs one seed makes in profile `cfg`, by `remove_every_tokens` (one: None)."""
        return [None]

    def flops_per_token(self, student: float, teacher: float, scratch: float, train: TrainConfig) -> float:
        """Training FLOPs per token from forward FLOPs per token of the truncated student, the
        teacher and the half-depth model from scratch (planner estimates): forward + backward of the
        model it trains, plus a teacher forward wherever its objective reads one."""
        return 3 * student + (teacher if self.objective != "lm" else 0)

    def extra_flops(self, study, name: str) -> float:
        """Compute its runs need besides their own training steps (0: none)."""
        return 0.0
