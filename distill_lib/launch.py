"""How a run is launched: the `Accelerator` (one process, or a DDP group that a launcher started,
on GPUs or as a CPU gloo group) and the MFU denominator a campaign passes to every run
(`DISTILL_PEAK_FLOPS`). Used by the training loop (`distill_lib.train`)."""
from __future__ import annotations

import math
import os

import torch

from distill_lib.config import ConfigError


def make_accelerator(precision: str = "fp32"):
    """The run's `Accelerator`. Several processes started by a launcher (`torchrun --nproc_per_node
    N`, `accelerate launch --multi_gpu --num_processes N`) join one DDP group; on a machine without
    GPU that group is a CPU one (gloo), which accelerate forms only when told to use the CPU. A
    launch that asked for several processes but got one, or whose processes did not join, is
    refused: each process would train alone, all of them writing into the same run folder."""
    from accelerate import Accelerator

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cpu = world > 1 and not torch.cuda.is_available()
    if world == 1 and os.environ.get("MASTER_ADDR") and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        raise ConfigError("launch: `accelerate launch --cpu --num_processes N` starts one process (without mpirun); "
                          "start N CPU processes with `accelerate launch --multi_gpu --num_processes N` or "
                          "`torchrun --nproc_per_node N`")
    accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=cpu)
    if accelerator.num_processes != world:
        raise ConfigError(f"launch: {world} processes were started (WORLD_SIZE) but accelerate joined "
                          f"{accelerator.num_processes} ({accelerator.distributed_type}); start N processes with "
                          "`accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`")
    return accelerator


#: The MFU denominator (FLOP/s of one device) for every run of this process, instead of the matmul
#: rate each run measures at set-up: processes that share one GPU would each measure it under
#: contention (MFU above 1 in a GPU campaign of 12 processes), so one rate measured alone is passed
#: to all of them (bench/gpu_campaign.sh). It only changes the logged `mfu`, never the training.
PEAK_FLOPS_ENV = "DISTILL_PEAK_FLOPS"


def peak_flops_from_env() -> float | None:
    """The FLOP/s given in DISTILL_PEAK_FLOPS (e.g. `6.2e13`), or None when it is unset or empty."""
    value = os.environ.get(PEAK_FLOPS_ENV, "").strip()
    if not value:
        return None
    try:
        peak = float(value)
    except ValueError:
        peak = float("nan")
    if not (math.isfinite(peak) and peak > 0):
        raise ConfigError(f"{PEAK_FLOPS_ENV}: {value!r} is not a positive number of FLOP/s (e.g. 6.2e13)")
    return peak
