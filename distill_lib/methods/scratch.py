"""A half-depth model of the teacher's shape trained from scratch (its own budget: `scratch_train`)."""
import dataclasses

from distill_lib.methods.base import Method, RunRequest
from distill_lib.run_config import RunConfig


class FromScratch(Method):
    def run_config(self, req: RunRequest) -> RunConfig:
        """Named after the method or variant only: no truncation, so no strategy."""
        from distill_lib.layer_choice import drop_count

        cfg = req.study.cfg
        n = req.study.teacher_layers
        model = dataclasses.replace(cfg.teacher_model, n_layers=n - drop_count(n, cfg.drop))
        return RunConfig(name=f"{req.name}-s{req.seed}", data=req.data, model=model, train=req.train)

    def base_training(self, cfg):
        """Its own budget, if the profile sets one (`scratch_train`; its variants build on it)."""
        return cfg.scratch_train or cfg.student_train

    def flops_per_token(self, student, teacher, scratch, train) -> float:
        return 3 * scratch


METHOD = FromScratch(name="scratch", label="from scratch", objective="lm", notebook="00_base_models", order=5,
                     color="tab:brown", uses_teacher=False, variant_base=True, init_kind="scratch")
