"""KD first, then teacher-free: vanilla KD for the first fraction `kd_fraction` of the token budget
(default one half), then continued pretraining with the LM loss alone, the teacher unloaded at the
switch. The study finds KD ahead per token and behind per FLOP; this asks whether distilling only
early buys KD's head start at a fraction of its cost. Each phase is charged its own FLOPs (the
teacher's forward only while it distils). A variant sets `train: {kd_fraction: f}`."""
import dataclasses

from distill_lib.methods.base import Method, RunRequest
from distill_lib.run_config import RunConfig

DEFAULT_FRACTION = 0.5


class KDThenTF(Method):
    def run_config(self, req: RunRequest) -> RunConfig:
        if req.train.kd_fraction is None:
            req = dataclasses.replace(req, train=dataclasses.replace(req.train, kd_fraction=DEFAULT_FRACTION))
        return super().run_config(req)

    def flops_per_token(self, student, teacher, scratch, train) -> float:
        fraction = DEFAULT_FRACTION if train.kd_fraction is None else train.kd_fraction
        return 3 * student + fraction * teacher


METHOD = KDThenTF(name="kd-then-tf", label="KD then TF", objective="kd", notebook="02_teacher_free_vs_kd",
                  order=8, color="tab:olive", variant_base=True, core=False)
