"""Offline KD: the teacher's top-k logits are cached once (one teacher forward per cached token,
before the first step), then the student distils from the cache with the teacher unloaded."""
from distill_lib.methods.base import Method


class OfflineKD(Method):
    def extra_flops(self, study, name: str) -> float:
        """The logit cache: the forward that online KD pays inside its steps, paid up front."""
        run = study.student(name, seed=study.seeds(name)[0])
        cache = run.training.get("teacher_cache")
        # records from before the cache was described: it holds the blocks the run trained on
        tokens = cache["blocks"] * study.cfg.data.block_length if cache else run.training["tokens"]
        return study.teacher_forward_flops * tokens


METHOD = OfflineKD(name="offline-kd", label="offline KD", objective="offline-kd", notebook="02_teacher_free_vs_kd",
                   order=2, color="tab:green", variant_base=True)
