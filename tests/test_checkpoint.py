"""Checkpoints under several processes. Two CPU processes (gloo) train, are stopped after a
checkpoint, and new processes resume: the run ends as the uninterrupted two-process run, bit for bit,
with DDP (through `train`, launched by accelerate) and with FSDP (torch's `fully_shard`; accelerate
1.x turns FSDP on only for GPU-class devices, so `train` on CPU processes is DDP and the FSDP case
drives the checkpoint functions directly). The saved state is full, not one process's shard."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from distill_lib.config import DataConfig, InitConfig, RunConfig, TrainConfig, to_dict
from distill_lib.data import prepare_data

DATA = DataConfig(max_documents=120, vocab_size=300, block_length=32, validation_fraction=0.1, test_fraction=0.1)
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: list[str], script: Path, *args: str, cwd: Path) -> None:
    done = subprocess.run([*launcher, str(script), *args], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def saved(folder: Path) -> tuple[dict, dict]:
    """A checkpoint's model weights and optimizer state."""
    return (load_file(folder / "model" / "model.safetensors"),
            torch.load(folder / "optimizer.pt", weights_only=True))


def assert_same_checkpoint(a: Path, b: Path) -> None:
    (wa, oa), (wb, ob) = saved(a), saved(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert oa["state"].keys() == ob["state"].keys()
    for name, state in oa["state"].items():
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(ob["state"][name][k])) for k, v in state.items()), name
    # the optimizer state is whole: a moment for every weight of the model, keyed by name
    assert {f"student.{k}" for k in wa} <= oa["state"].keys()


@pytest.fixture(scope="module")
def dropout_teacher(tmp_path_factory):
    """A GPT-2-config model with dropout 0.1 and the data's tokenizer: every step draws from the
    run's generator, whose state the checkpoint carries."""
    from transformers import GPT2Config, GPT2LMHeadModel

    data = prepare_data(DATA, log=None)
    config = GPT2Config(vocab_size=len(data.tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                        bos_token_id=data.eos_token_id, eos_token_id=data.eos_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dropout") / "model"
    GPT2LMHeadModel(config).save_pretrained(folder)
    data.tokenizer.save_pretrained(folder)
    return folder


DDP_JOB = """\
import json, os, sys
from distill_lib.config import RunConfig, from_dict
from distill_lib.train import train
run, out, phase = from_dict(RunConfig, json.loads(sys.argv[1])), sys.argv[2], sys.argv[3]
rank = os.environ["RANK"]
if phase == "straight-and-stopped":
    summary = train(run, os.path.join(out, "straight"), log=None)
    stopped = train(run, os.path.join(out, "stopped"), log=None, stop_after=3)
    json.dump({"processes": summary["processes"], "stopped": stopped}, open(os.path.join(out, f"first-{rank}.json"), "w"))
else:
    summary = train(run, os.path.join(out, "stopped"), log=None)
    json.dump({"processes": summary["processes"]}, open(os.path.join(out, f"resumed-{rank}.json"), "w"))
"""


@pytest.mark.slow
def test_two_ddp_processes_stopped_and_resumed_end_as_the_uninterrupted_two_process_run(dropout_teacher, tmp_path):
    run = RunConfig(name="ddp-resume", data=DATA, init=InitConfig(kind="pretrained"), teacher=str(dropout_teacher),
                    train=TrainConfig(max_steps=5, batch_size=8, micro_batch_size=2, lr=3e-3, warmup_steps=2,
                                      eval_every=2, eval_blocks=8, checkpoint_every=2))
    script = tmp_path / "job.py"
    script.write_text(DDP_JOB)
    launcher = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(free_port())]
    out = tmp_path / "two"
    launch(launcher, script, json.dumps(to_dict(run)), str(out), "straight-and-stopped", cwd=tmp_path)
    first = [json.loads((out / f"first-{r}.json").read_text()) for r in (0, 1)]
    assert first == [{"processes": 2, "stopped": {"stopped_at": 3}}] * 2
    assert json.loads((out / "stopped" / "checkpoint" / "state.json").read_text())["step"] == 2  # step 3 is lost
    launch(launcher, script, json.dumps(to_dict(run)), str(out), "resume", cwd=tmp_path)  # new processes
    assert [json.loads((out / f"resumed-{r}.json").read_text()) for r in (0, 1)] == [{"processes": 2}] * 2
    assert_same_checkpoint(out / "straight" / "checkpoint", out / "stopped" / "checkpoint")

    def metrics(name):
        return [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]

    timing = ("wall_seconds", "tokens_per_s", "mfu", "peak_memory_bytes", "val_seconds")
    straight, resumed = metrics("straight"), metrics("stopped")
    assert [e["step"] for e in resumed] == [1, 2, 3, 4, 5]  # step 3 redone once, none lost
    assert [{k: v for k, v in e.items() if k not in timing} for e in straight] == \
        [{k: v for k, v in e.items() if k not in timing} for e in resumed]


FSDP_JOB = """\
import json, sys
from pathlib import Path
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from distill_lib.checkpoint import read_checkpoint, restore_optimizer, save_checkpoint
from distill_lib.config import ModelConfig, TrainConfig
from distill_lib.models import build_model, decoder_layers
from distill_lib.objectives import LMObjective, TrainingModule
from distill_lib.loop import lr_at, make_optimizer

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
out, phase = Path(sys.argv[1]), sys.argv[2]
CFG = TrainConfig(max_steps=5, batch_size=4, lr=3e-3, warmup_steps=1)
MODEL = ModelConfig(n_layers=2, hidden_size=32, n_heads=4, max_position_embeddings=64)  # tied embeddings


def sharded(student):
    module = TrainingModule(student, LMObjective())
    for layer in decoder_layers(student):
        fully_shard(layer)
    fully_shard(module)
    return module, make_optimizer(module, CFG)


def train_steps(module, optimizer, start, stop):
    losses = []
    for step in range(start, stop):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, CFG.lr, CFG.warmup_steps, CFG.max_steps, CFG.min_lr_ratio)
        ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(1000 * step + rank))
        loss, _ = module(ids)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(float(mean) / world)
    return losses


result = {}
if phase == "straight-and-stopped":
    module, optimizer = sharded(build_model(MODEL, 300, seed=0))
    result["straight"] = train_steps(module, optimizer, 0, 5)
    save_checkpoint(out / "straight" / "checkpoint", module, optimizer, {"step": 5})
    module, optimizer = sharded(build_model(MODEL, 300, seed=0))
    result["stopped"] = train_steps(module, optimizer, 0, 2)
    save_checkpoint(out / "stopped" / "checkpoint", module, optimizer, {"step": 2})
    result["stopped"] += train_steps(module, optimizer, 2, 3)  # step 3: lost with the stop
    result["shard"] = list(module.student.model.embed_tokens.weight.to_local().shape)
else:  # new processes: the model from the checkpoint, each process takes its optimizer shard
    saved = read_checkpoint(out / "stopped" / "checkpoint")
    module, optimizer = sharded(saved["student"])
    restore_optimizer(module, optimizer, saved["optimizer"])
    result["resumed"] = train_steps(module, optimizer, saved["state"]["step"], 5)
    save_checkpoint(out / "stopped" / "checkpoint", module, optimizer, {"step": 5})
if rank == 0:
    (out / f"{phase}.json").write_text(json.dumps(result))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_fsdp_checkpoints_hold_the_full_state_and_two_processes_resume_to_the_same_weights(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(FSDP_JOB)
    launcher = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    out = tmp_path / "fsdp"
    out.mkdir()
    launch(launcher, script, str(out), "straight-and-stopped", cwd=tmp_path)
    launcher[-1] = str(free_port())
    launch(launcher, script, str(out), "resumed", cwd=tmp_path)
    first = json.loads((out / "straight-and-stopped.json").read_text())
    resumed = json.loads((out / "resumed.json").read_text())["resumed"]
    assert first["shard"] == [150, 32]  # each process held half of the embedding (and of its moments)
    assert first["straight"] == first["stopped"][:2] + resumed and first["stopped"][2] == resumed[0]
    assert_same_checkpoint(out / "straight" / "checkpoint", out / "stopped" / "checkpoint")
    weights, optimizer = saved(out / "straight" / "checkpoint")
    assert optimizer["state"]["student.model.embed_tokens.weight"]["exp_avg"].shape == (300, 32)  # gathered
    assert "lm_head.weight" not in weights  # tied to the embedding, stored once as by one process
    assert np.isfinite(first["straight"]).all()


@pytest.mark.parametrize("peak, min_ratio, steps", [(3e-3, 0.1, 16), (1.2e-3, 0.1, 7), (1e-2, 0.0, 50), (5e-4, 0.3, 1)])
def test_the_loops_cosine_annealing_is_torchs_to_the_bit(peak, min_ratio, steps):
    """The replacement layer's stage 1 was recorded with torch's CosineAnnealingLR; the loop's
    schedule for it gives the same lr at every step."""
    from distill_lib.loop import cosine_annealing_lrs

    probe = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([probe], lr=peak)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=peak * min_ratio)
    expected = []
    for _ in range(steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert cosine_annealing_lrs(peak, min_ratio, steps) == expected
