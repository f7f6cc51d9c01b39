"""Width pruning (DimCHOP): the whole teacher, its FFN units pruned during LM training down to the
depth-pruned student's parameter count."""
from distill_lib.methods.base import Method, RunRequest
from distill_lib.run_config import InitConfig, RunConfig, WidthConfig


class Width(Method):
    def run_config(self, req: RunRequest) -> RunConfig:
        return RunConfig(name=f"{req.name}-s{req.seed}", data=req.data, init=InitConfig(kind="pretrained"),
                         teacher=req.teacher, train=req.train, width=WidthConfig(target=req.study.width_target))

    def flops_per_token(self, student, teacher, scratch, train) -> float:
        return 3 * teacher  # it starts as the whole teacher


METHOD = Width(name="width", label="width", objective="lm", notebook="07_width_vs_depth", order=7,
               init_kind="pretrained", variant_base=True)
