"""Training throughput benchmark (issue: one training engine). Not a test: numbers go to
bench/RESULTS_train.md. Each case runs in its own process so peak RSS is per case.

    python bench/train_bench.py            # all cases, writes bench/RESULTS_train.md
    python bench/train_bench.py --case lm  # one case, prints JSON

Same model, data and batch everywhere: a Llama-style teacher (12 layers, d=256) and its max-gap
truncation (6 layers) on the World English Bible, vocab 4096, blocks of 128, batch 16.
"""
from __future__ import annotations

import argparse
import json
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
from distill_lib.train import train

DATA = DataConfig(vocab_size=4096, block_length=128)
TEACHER = ModelConfig(n_layers=12, hidden_size=256, n_heads=4, max_position_embeddings=256)
STEPS, WARMUP_STEPS, BATCH, ROUNDS = 24, 4, 16, 2
OUT = Path(__file__).with_name("RESULTS_train.md")
WORK = Path(tempfile.gettempdir()) / "distill-bench"


def teacher_dir() -> Path:
    folder = WORK / "teacher"
    if not (folder / "config.json").exists():
        data = prepare_data(DATA, log=None)
        model = build_model(TEACHER, len(data.tokenizer), 0, data.eos_token_id, data.eos_token_id)
        model.save_pretrained(folder)
    return folder


def steady_tokens_per_s(step_seconds: list[float]) -> float:
    """Tokens/s of the fastest steady-state step: on a shared machine the minimum is the estimate
    least disturbed by other processes (the median moved by +-10% between identical runs here)."""
    return BATCH * DATA.block_length / min(step_seconds[WARMUP_STEPS:])


def case_loop(objective: str, precision: str = "fp32") -> dict:
    run = RunConfig(name=f"bench-{objective}", data=DATA, init=InitConfig(kind="truncate", strategy="max-gap", drop=0.5),
                    teacher=str(teacher_dir()),
                    train=TrainConfig(objective=objective, max_steps=STEPS, batch_size=BATCH, eval_every=0,
                                      eval_blocks=1, checkpoint_every=10_000, precision=precision, lr=1e-3))
    folder = WORK / f"run-{objective}-{precision}"
    import shutil
    shutil.rmtree(folder, ignore_errors=True)
    summary = train(run, folder, log=None)
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    seconds = [BATCH * DATA.block_length / e["tokens_per_s"] for e in lines]
    return {"tokens_per_s": steady_tokens_per_s(seconds), "flops_per_token": summary["flops_per_token"]["total"],
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


def case_bare() -> dict:
    """The minimal PyTorch loop: forward with labels, backward, AdamW step."""
    student, batches = _student_and_batches()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, foreach=False)
    seconds = []
    for ids in batches:
        start = time.perf_counter()
        loss = student(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
    return {"tokens_per_s": steady_tokens_per_s(seconds), "peak_rss_gib": peak_memory_bytes() / 2**30}


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
    return {"tokens_per_s": steady_tokens_per_s(seconds), "peak_rss_gib": peak_memory_bytes() / 2**30}


CASES = {
    "lm": lambda: case_loop("lm"), "lm-bf16": lambda: case_loop("lm", "bf16"), "kd": lambda: case_loop("kd"),
    "offline-kd": lambda: case_loop("offline-kd"), "bare": case_bare, "hf-trainer": case_hf_trainer,
    "peak": lambda: {"fp32": measure_matmul_peak(torch.float32), "bf16": measure_matmul_peak(torch.bfloat16)},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=list(CASES))
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(CASES[args.case]()))
        return
    teacher_dir()
    results: dict = {}
    for round_ in range(ROUNDS):  # interleaved rounds; each case keeps its best round
        for name in CASES:
            out = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True)
            got = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))[7:])
            if name == "peak":
                got = {k: max(v, results.get(name, {}).get(k, 0)) for k, v in got.items()}
            elif name in results and results[name]["tokens_per_s"] >= got["tokens_per_s"]:
                got = results[name]
            results[name] = got
            print(round_, name, {k: v for k, v in got.items() if k != "losses"}, flush=True)
    write_report(results)


def write_report(r: dict) -> None:
    peak = r["peak"]
    ratio_kd = r["lm"]["tokens_per_s"] / r["kd"]["tokens_per_s"]
    ratio_flops = r["kd"]["flops_per_token"] / r["lm"]["flops_per_token"]
    ratio_off = r["lm"]["tokens_per_s"] / r["offline-kd"]["tokens_per_s"]
    mfu = lambda case, p: r[case]["flops_per_token"] * r[case]["tokens_per_s"] / p  # noqa: E731
    bf16_gap = abs(r["lm-bf16"]["final_loss"] - r["lm"]["final_loss"])
    lines = [
        "# Training-loop benchmark", "",
        f"Machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}. "
        f"Student: 6-layer d=256 Llama-style (max-gap truncation of a 12-layer teacher), vocab 4096, "
        f"blocks of {DATA.block_length}, batch {BATCH}; tokens/s of the fastest step among steps {WARMUP_STEPS + 1}-{STEPS}, "
        f"best of {ROUNDS} interleaved rounds (each case in its own process).", "",
        "| case | tokens/s | peak RSS (GiB) |", "|---|---|---|",
    ]
    for name in ("lm", "lm-bf16", "kd", "offline-kd", "bare", "hf-trainer"):
        lines.append(f"| {name} | {r[name]['tokens_per_s']:,.0f} | {r[name]['peak_rss_gib']:.2f} |")
    lines += [
        "",
        f"- This loop vs HF `Trainer`: **{r['lm']['tokens_per_s'] / r['hf-trainer']['tokens_per_s']:.2f}x** "
        f"(target >= 1.1x); vs the bare PyTorch loop: {r['lm']['tokens_per_s'] / r['bare']['tokens_per_s']:.2f}x.",
        f"- Measured matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s. "
        f"MFU: fp32 {mfu('lm', peak['fp32']):.1%}, bf16 {r['lm-bf16']['flops_per_token'] * r['lm-bf16']['tokens_per_s'] / peak['bf16']:.1%}.",
        f"- KD / TF step time: **{ratio_kd:.2f}x** measured vs {ratio_flops:.2f}x analytic FLOPs "
        f"({abs(ratio_kd / ratio_flops - 1):.0%} apart; target within 10%).",
        f"- Offline KD / TF step time: **{ratio_off:.2f}x** (target <= 1.15).",
        f"- bf16 vs fp32 after {STEPS} steps: loss {r['lm-bf16']['final_loss']:.4f} vs {r['lm']['final_loss']:.4f} "
        f"(|diff| {bf16_gap:.4f}); bf16 speed-up {r['lm-bf16']['tokens_per_s'] / r['lm']['tokens_per_s']:.2f}x.",
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
