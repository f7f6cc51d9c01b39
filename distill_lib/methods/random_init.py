"""The truncated student's shapes, re-initialised at random, trained with the LM loss (C1's control)."""
from distill_lib.methods.base import Method

METHOD = Method(name="random", label="random init", objective="lm", notebook="02_teacher_free_vs_kd", order=4,
                color="tab:gray", init_kind="random-truncated")
