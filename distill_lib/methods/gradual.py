"""Gradual removal: the whole teacher, continued with the LM loss while it loses one layer (in the
strategy's order) every `remove_every_tokens` tokens, one run per interval of `gradual_every_tokens`.
Its runs are `gradual<K>-...`; a variant's `<variant>-<K>-...` (e.g. `gradual-lr-4x-2048-max-gap-s0`)."""
import dataclasses

from distill_lib.methods.base import Method, RunRequest
from distill_lib.run_config import InitConfig, RunConfig


class Gradual(Method):
    def run_config(self, req: RunRequest) -> RunConfig:
        from distill_lib.layer_choice import select_layers

        n = req.study.teacher_layers
        keep = select_layers(req.strategy, n, drop=req.study.cfg.drop)
        removed = [i for i in range(n) if i not in keep]
        train = dataclasses.replace(req.train, remove_every_tokens=req.remove_every_tokens, removal_order=removed)
        schedule = f"{req.name}{req.remove_every_tokens}" if req.name == self.name else f"{req.name}-{req.remove_every_tokens}"
        return RunConfig(name=f"{schedule}-{req.strategy}-s{req.seed}", data=req.data,
                         init=InitConfig(kind="pretrained"), teacher=req.teacher, train=train)

    def schedules(self, cfg) -> list:
        return list(cfg.gradual_every_tokens)

    def flops_per_token(self, student, teacher, scratch, train) -> float:
        return 3 * teacher  # it starts as the whole teacher


METHOD = Gradual(name="gradual", label="gradual", objective="lm", notebook="03_prune_schedule", order=6,
                 init_kind="pretrained", variant_base=True)
