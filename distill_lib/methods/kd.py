"""Vanilla knowledge distillation: the truncated student matches the teacher's logits (KL, the
teacher in memory) mixed with the LM loss."""
from distill_lib.methods.base import Method

METHOD = Method(name="kd", label="KD", objective="kd", notebook="02_teacher_free_vs_kd", order=1,
                color="tab:orange", variant_base=True)
