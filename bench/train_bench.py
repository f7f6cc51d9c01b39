"""Training throughput benchmark (issue: one training engine). Not a test: numbers go to
bench/RESULTS_train.md. Each case runs in its own process so peak RSS is per case.

    python bench/train_bench.py            # all cases, writes bench/RESULTS_train.md
    python bench/train_bench.py --case lm  # one case, prints JSON

Cases: this project's loop (TF as `lm`, KD, offline KD), a bare PyTorch loop and the HF `Trainer`
(fastest steady-state step of the best of 3 interleaved rounds), per-op profiles of the bare and
this loop's TF steps, the matmul peak; `lm-bf16` only on CPUs with bf16 units.

Same model, data and batch everywhere: a Llama-style teacher (12 layers, d=256) and its max-gap
truncation (6 layers) on the World English Bible, vocab 4096, blocks of 128, batch 16.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import distill_lib  # noqa: F401
from distill_lib.config import DataConfig, InitConfig, ModelConfig, RunConfig, TrainConfig
from distill_lib.data import prepare_data
from distill_lib.flops import measure_matmul_peak, peak_memory_bytes, training_flops_per_token
from distill_lib.models import build_model
from distill_lib.timing import steady_tokens_per_s, time_steps

DATA = DataConfig(vocab_size=4096, block_length=128)
TEACHER = ModelConfig(n_layers=12, hidden_size=256, n_heads=4, max_position_embeddings=256)
STEPS, WARMUP_STEPS, BATCH, ROUNDS = 24, 4, 16, 3
OUT = Path(__file__).with_name("RESULTS_train.md")
WORK = Path(tempfile.gettempdir()) / "distill-bench"


def teacher_dir() -> Path:
    folder = WORK / "teacher"
    if not (folder / "config.json").exists():
        data = prepare_data(DATA, log=None)
        model = build_model(TEACHER, len(data.tokenizer), 0, data.eos_token_id, data.eos_token_id)
        model.save_pretrained(folder)
    return folder


def fastest_tokens_per_s(step_seconds: list[float]) -> float:
    """Tokens/s of the fastest steady-state step (`distill_lib.timing.steady_tokens_per_s` with the
    minimum): on a shared machine the minimum is the estimate least disturbed by other processes
    (the median moved by +-10% between identical runs here)."""
    return steady_tokens_per_s(step_seconds, BATCH * DATA.block_length, WARMUP_STEPS, statistic=min)


def loop_run(objective: str, precision: str = "fp32") -> tuple[RunConfig, Path]:
    """This project's run of the bench student and an emptied folder for it."""
    run = RunConfig(name=f"bench-{objective}", data=DATA, init=InitConfig(kind="truncate", strategy="max-gap", drop=0.5),
                    teacher=str(teacher_dir()),
                    train=TrainConfig(objective=objective, max_steps=STEPS, batch_size=BATCH, eval_every=0,
                                      eval_blocks=1, checkpoint_every=10_000, precision=precision, lr=1e-3))
    folder = WORK / f"run-{objective}-{precision}"
    shutil.rmtree(folder, ignore_errors=True)
    return run, folder


def case_loop(objective: str, precision: str = "fp32") -> dict:
    """This project's loop, timed by the library (`distill_lib.timing.time_steps`), fastest step."""
    run, folder = loop_run(objective, precision)
    timed = time_steps(run, folder, STEPS, WARMUP_STEPS, statistic=min)
    lines = timed.metrics
    return {"tokens_per_s": timed.tokens_per_s, "flops_per_token": timed.summary["flops_per_token"]["total"],
            "final_loss": lines[-1]["loss"], "losses": [e["loss"] for e in lines],
            "peak_rss_gib": peak_memory_bytes() / 2**30}


def _student_and_batches():
    from distill_lib.models import load_causal_lm
    from distill_lib.truncate import select_layers, truncate

    data = prepare_data(DATA, log=None)
    teacher = load_causal_lm(teacher_dir())
    student = truncate(teacher, select_layers("max-gap", 12, drop=0.5)).train()
    blocks = data.blocks("train")
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(blocks[rng.integers(0, len(blocks), BATCH)].astype(np.int64)) for _ in range(STEPS)]
    return student, batches


def bare_step(student, opt, ids) -> None:
    """The minimal PyTorch step: forward with labels, backward, clip, AdamW step."""
    student(input_ids=ids, labels=ids).loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def case_bare() -> dict:
    student, batches = _student_and_batches()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, foreach=False)
    seconds = []
    for ids in batches:
        start = time.perf_counter()
        bare_step(student, opt, ids)
        seconds.append(time.perf_counter() - start)
    return {"tokens_per_s": fastest_tokens_per_s(seconds), "peak_rss_gib": peak_memory_bytes() / 2**30}


def case_hf_trainer() -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    student, batches = _student_and_batches()
    rows = [{"input_ids": ids[i], "labels": ids[i]} for ids in batches for i in range(BATCH)]
    seconds: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            seconds.append(time.perf_counter() - self.start)

    args = TrainingArguments(output_dir=str(WORK / "hf"), per_device_train_batch_size=BATCH, max_steps=STEPS,
                             learning_rate=1e-3, max_grad_norm=1.0, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    Trainer(model=student, args=args, train_dataset=rows, callbacks=[StepTimer()]).train()
    return {"tokens_per_s": fastest_tokens_per_s(seconds), "peak_rss_gib": peak_memory_bytes() / 2**30}


def case_profile(loop: bool) -> dict:
    """Top ops by self time of one TF step: the bare loop's, or this project's (`train_step`)."""
    from smollm2_bench import top_ops  # the same profiler settings as the SmolLM2 bench

    if not loop:
        student, batches = _student_and_batches()
        opt = torch.optim.AdamW(student.parameters(), lr=1e-3, foreach=False)
        return top_ops(lambda: bare_step(student, opt, batches[0]), steps=4)
    from distill_lib.loop import train_step
    from distill_lib.train import set_up

    run, folder = loop_run("lm")
    t = set_up(run, folder, None, None, 1e12)
    t.start_run_rng()
    return top_ops(lambda: train_step(t, []), steps=4)


#: bf16 matmuls are emulated (many times slower than fp32) on CPUs without bf16 units: no bf16 case there
HAS_BF16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
CASES = {
    "lm": lambda: case_loop("lm"), "lm-bf16": lambda: case_loop("lm", "bf16"), "kd": lambda: case_loop("kd"),
    "offline-kd": lambda: case_loop("offline-kd"), "bare": case_bare, "hf-trainer": case_hf_trainer,
    "profile": lambda: case_profile(loop=False), "profile-lm": lambda: case_profile(loop=True),
    "peak": lambda: {"fp32": measure_matmul_peak(torch.float32),
                     **({"bf16": measure_matmul_peak(torch.bfloat16)} if HAS_BF16 else {})},
}
if not HAS_BF16:
    del CASES["lm-bf16"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=list(CASES))
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(CASES[args.case]()))
        return
    teacher_dir()
    results: dict = {}
    per_round: list[dict] = []  # tokens/s of each round: how far one round's ratios move
    for round_ in range(ROUNDS):
        per_round.append({})  # interleaved rounds; each case keeps its best round
        for name in CASES:
            if name.startswith("profile") and round_ > 0:
                continue  # op shares, not speed: one profile is enough
            out = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True)
            got = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))[7:])
            if "tokens_per_s" in got:
                per_round[-1][name] = got["tokens_per_s"]
            if name == "peak":
                got = {k: max(v, results.get(name, {}).get(k, 0)) for k, v in got.items()}
            elif name in results and results[name]["tokens_per_s"] >= got["tokens_per_s"]:
                got = results[name]
            results[name] = got
            print(round_, name, {k: v for k, v in got.items() if k not in ("losses", "top_ops")}, flush=True)
    write_report(results, per_round)


def write_report(r: dict, per_round: list[dict]) -> None:
    peak = r["peak"]
    ratio_kd = r["lm"]["tokens_per_s"] / r["kd"]["tokens_per_s"]
    ratio_flops = r["kd"]["flops_per_token"] / r["lm"]["flops_per_token"]
    ratio_off = r["lm"]["tokens_per_s"] / r["offline-kd"]["tokens_per_s"]
    mfu = lambda case, p: r[case]["flops_per_token"] * r[case]["tokens_per_s"] / p  # noqa: E731
    lines = [
        "# Training-loop benchmark", "",
        f"Machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}. "
        f"Student: 6-layer d=256 Llama-style (max-gap truncation of a 12-layer teacher), vocab 4096, "
        f"blocks of {DATA.block_length}, batch {BATCH}; tokens/s of the fastest step among steps {WARMUP_STEPS + 1}-{STEPS}, "
        f"best of {ROUNDS} interleaved rounds (each case in its own process).", "",
        "| case | tokens/s | peak RSS (GiB) |", "|---|---|---|",
    ]
    for name in ("lm", "lm-bf16", "kd", "offline-kd", "bare", "hf-trainer"):
        if name in r:
            lines.append(f"| {name} | {r[name]['tokens_per_s']:,.0f} | {r[name]['peak_rss_gib']:.2f} |")
    each = lambda a, b: ", ".join(f"{x[a] / x[b]:.2f}x" for x in per_round)  # noqa: E731
    lines += [
        "",
        f"- This loop vs HF `Trainer`: **{r['lm']['tokens_per_s'] / r['hf-trainer']['tokens_per_s']:.2f}x** "
        f"(target >= 1.1x); vs the bare PyTorch loop: {r['lm']['tokens_per_s'] / r['bare']['tokens_per_s']:.2f}x. "
        f"Round by round (the cases of one round run one after the other): vs the Trainer {each('lm', 'hf-trainer')}; "
        f"vs the bare loop {each('lm', 'bare')}; the Trainer vs the bare loop {each('hf-trainer', 'bare')}.",
        f"- Measured fp32 matmul peak {peak['fp32'] / 1e9:.0f} GFLOP/s; MFU fp32 {mfu('lm', peak['fp32']):.1%}.",
        f"- KD / TF step time: **{ratio_kd:.2f}x** measured vs {ratio_flops:.2f}x analytic FLOPs "
        f"({abs(ratio_kd / ratio_flops - 1):.0%} apart; target within 10%).",
        f"- Offline KD / TF step time: **{ratio_off:.2f}x** (target <= 1.15).",
    ]
    mm = {case: sum(o["self_s"] for o in r[case]["top_ops"] if o["op"] == "aten::mm") / r[case]["step_s"]
          for case in ("profile", "profile-lm")}
    lines.append(f"- What bounds the ratio to the Trainer: the Trainer runs at "
                 f"{r['hf-trainer']['tokens_per_s'] / r['bare']['tokens_per_s']:.2f}x the bare loop's speed, and in the "
                 f"bare loop's step `aten::mm` is {mm['profile']:.0%} of the op time (this loop's: {mm['profile-lm']:.0%}); "
                 f"the rest is the model's own attention, norms, activations, softmax and the AdamW update, which the "
                 f"same numerics need. A loop with no overhead of its own matches the bare loop; 1.1x the bare loop "
                 f"would take cutting the time of those non-matmul ops by {(1 - 1 / 1.1) / (1 - mm['profile']):.0%} "
                 f"(fused kernels), at equal matmul time.")
    if "lm-bf16" in r:
        lines.append(f"- bf16 vs fp32 after {STEPS} steps: loss {r['lm-bf16']['final_loss']:.4f} vs "
                     f"{r['lm']['final_loss']:.4f}; bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s peak, MFU "
                     f"{mfu('lm-bf16', peak['bf16']):.1%}, speed-up {r['lm-bf16']['tokens_per_s'] / r['lm']['tokens_per_s']:.2f}x.")
    else:
        lines.append(f"- No bf16 case: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 units, so "
                     "bf16 matmuls are emulated and far slower than fp32.")
    for case, title in [("profile", "the bare loop's TF step"), ("profile-lm", "this loop's TF step")]:
        lines += ["", f"Top ops by self CPU time, {title} (torch.profiler, {r[case]['step_s']:.2f} s of op time per "
                      "step; the profiler adds overhead):", "",
                  "| op | self s / step | share | calls / step |", "|---|---|---|---|"]
        lines += [f"| `{o['op']}` | {o['self_s']:.3f} | {o['share']:.0%} | {o['calls']} |" for o in r[case]["top_ops"]]
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
