"""Teacher-free (the paper's method): truncate the teacher, continue pretraining with the LM loss."""
from distill_lib.methods.base import Method

METHOD = Method(name="tf", label="TF", objective="lm", notebook="02_teacher_free_vs_kd", order=0,
                color="tab:blue", variant_base=True)
