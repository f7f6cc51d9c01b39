"""CHOP+distill (v3): KD's logit loss plus hidden-state and attention losses on the kept layers."""
from distill_lib.methods.base import Method

METHOD = Method(name="chop-distill", label="CHOP+distill", objective="chop-distill", notebook="05_chop_plus_distill",
                order=3, color="tab:purple", variant_base=True)
