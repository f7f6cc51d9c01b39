"""The method registry (`distill_lib.methods`: one file per method) and the method that proves it,
kd-then-tf: vanilla KD for the first share of the steps, then the LM loss alone, the teacher unloaded."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_lib import methods
from distill_lib.config import ConfigError, InitConfig, RunConfig
from distill_lib.data import prepare_data
from distill_lib.planner import compute_estimate
from distill_lib.runs import get_or_train
from distill_lib.study_config import StudyConfig
from distill_lib.train import _teacher_for, train
from test_train import DATA, TINY, final_weights, losses, short


# --- the registry ------------------------------------------------------------------------------
def test_every_file_of_the_package_declares_one_method_in_the_registry():
    files = sorted(p.stem for p in Path(methods.__file__).parent.glob("*.py") if p.stem not in ("__init__", "base"))
    assert len(files) == len(methods.METHODS)
    assert methods.METHODS[:8] == ("tf", "kd", "offline-kd", "chop-distill", "random", "scratch", "gradual", "width")
    assert "kd-then-tf" in methods.METHODS and "kd-then-tf" not in methods.CORE_METHODS


def test_the_registry_keeps_the_labels_and_colours_every_figure_used():
    assert methods.LABELS == {"tf": "TF", "kd": "KD", "offline-kd": "offline KD", "random": "random init",
                              "chop-distill": "CHOP+distill", "scratch": "from scratch", "gradual": "gradual",
                              "width": "width", "kd-then-tf": "KD then TF"}
    from distill_lib.plots import METHOD_COLORS

    assert {k: METHOD_COLORS[k] for k in ("TF", "KD", "offline KD", "random init", "CHOP+distill", "from scratch",
                                          "width (DimCHOP)", "depth (LayerCHOP)")} == {
        "TF": "tab:blue", "KD": "tab:orange", "offline KD": "tab:green", "random init": "tab:gray",
        "CHOP+distill": "tab:purple", "from scratch": "tab:brown", "width (DimCHOP)": "tab:red",
        "depth (LayerCHOP)": "tab:blue"}


def test_an_unknown_method_is_one_line_naming_the_valid_ones():
    with pytest.raises(ConfigError, match=r"method: unknown 'kd-then-lm' \(valid: tf, kd, .*kd-then-tf\)"):
        methods.get("kd-then-lm")
    with pytest.raises(ConfigError, match=r"methods: unknown 'kdd'"):
        StudyConfig(methods=["tf", "kdd"])


def test_a_profile_without_methods_trains_the_core_methods_only():
    assert StudyConfig().methods == list(methods.CORE_METHODS)


def test_the_planner_charges_kd_then_tf_the_teachers_forward_for_its_kd_share_only():
    cfg = StudyConfig(methods=["tf", "kd", "kd-then-tf", "kd-then-tf-25"],
                      variants={"kd-then-tf-25": {"method": "kd-then-tf", "train": {"kd_fraction": 0.25}}})
    per_token = {row["method"]: row["flops_per_token"] for row in compute_estimate(cfg)}
    teacher_forward = per_token["kd"] - per_token["tf"]
    assert teacher_forward > 0
    assert per_token["kd-then-tf"] == pytest.approx(per_token["tf"] + 0.5 * teacher_forward)
    assert per_token["kd-then-tf-25"] == pytest.approx(per_token["tf"] + 0.25 * teacher_forward)
    assert cfg.label("kd-then-tf-25") == "KD then TF, KD for 25% of tokens"


# --- kd-then-tf: its config ------------------------------------------------------------------------
def test_kd_fraction_is_checked_where_it_is_set():
    with pytest.raises(ConfigError, match=r"train.kd_fraction: must be in \(0, 1\)"):
        short(objective="kd", kd_fraction=1.0)
    with pytest.raises(ConfigError, match=r"train.kd_fraction: switches from objective 'kd'.*'lm'"):
        RunConfig(name="x", teacher="t", init=InitConfig(kind="truncate", drop=2), train=short(kd_fraction=0.5))
    assert short(objective="kd", kd_fraction=0.5, max_steps=7).kd_steps() == 4  # rounded
    assert [short(objective="kd", kd_fraction=0.5).objective_at(s) for s in range(6)] == ["kd"] * 3 + ["lm"] * 3


# --- kd-then-tf: training ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return prepare_data(DATA, log=None)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("runs")
    return get_or_train(RunConfig(name="teacher", data=DATA, model=TINY, train=short(max_steps=30)), root=root, log=None)


def switched_run(teacher, **kw):
    return RunConfig(name="s-kd-then-tf", data=DATA, init=InitConfig(kind="truncate", drop=2),
                     teacher=str(teacher.model_dir), train=short(objective="kd", kd_fraction=0.5, **kw))


def entries(folder):
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


def test_kd_then_tf_is_kd_until_the_switch_then_the_lm_loss_with_the_teachers_flops_dropped(teacher, data, tmp_path):
    run = switched_run(teacher, max_steps=6)
    kd = dataclasses.replace(run, name="s-kd", train=dataclasses.replace(run.train, kd_fraction=None))
    tf = dataclasses.replace(run, name="s-tf", train=dataclasses.replace(run.train, kd_fraction=None, objective="lm"))
    summary = train(run, tmp_path / "switched", data=data, log=None)
    train(kd, tmp_path / "kd", data=data, log=None)
    train(tf, tmp_path / "tf", data=data, log=None)
    switched, kd_entries, tf_entries = entries(tmp_path / "switched"), entries(tmp_path / "kd"), entries(tmp_path / "tf")
    # steps 1-3 are KD's own (same data, same start), bit for bit; then the KD terms are gone
    assert [e["loss"] for e in switched[:3]] == [e["loss"] for e in kd_entries[:3]]
    assert all("kl" in e for e in switched[:3]) and not any("kl" in e for e in switched[3:])
    assert [e.get("teacher_released") for e in switched] == [None, None, True, None, None, None]
    # each phase is charged its own FLOPs per step: KD's, then TF's
    per_step = lambda es: [b["flops"] - a["flops"] for a, b in zip([{"flops": 0.0}] + es, es)]  # noqa: E731
    assert per_step(switched)[:3] == pytest.approx(per_step(kd_entries)[:3], rel=1e-12)
    assert per_step(switched)[3:] == pytest.approx(per_step(tf_entries)[3:], rel=1e-12)
    assert per_step(kd_entries)[0] > per_step(tf_entries)[0]
    assert summary["flops"] == pytest.approx(3 * per_step(kd_entries)[0] + 3 * per_step(tf_entries)[0], rel=1e-12)


# the switch is after step 3; resumed from the checkpoint of step 2 (KD), 3 (the switch) or 4 (LM)
@pytest.mark.parametrize("killed_after, checkpoint_every", [(3, 2), (4, 3), (5, 2)])
def test_kd_then_tf_killed_on_either_side_of_the_switch_resumes_to_the_same_weights(teacher, data, tmp_path,
                                                                                   killed_after, checkpoint_every):
    run = switched_run(teacher, max_steps=6, checkpoint_every=checkpoint_every)
    train(run, tmp_path / "straight", data=data, log=None)
    assert train(run, tmp_path / "killed", data=data, log=None, stop_after=killed_after) == {"stopped_at": killed_after}
    resumed_from = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())["step"]
    assert resumed_from == killed_after - 1
    train(run, tmp_path / "killed", data=data, log=None)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "straight") == losses(tmp_path / "killed")
    flops = [e["flops"] for e in entries(tmp_path / "straight")]
    assert flops == [e["flops"] for e in entries(tmp_path / "killed")]


def test_a_run_resumed_after_the_switch_never_loads_the_teacher(teacher, tmp_path):
    run = switched_run(teacher, max_steps=6)
    assert _teacher_for(run, tmp_path, step=2) is not None  # step 3 still distils
    assert _teacher_for(run, tmp_path, step=3) is None


# --- H3 on hand-made records ------------------------------------------------------------------------
from test_claims import FakeRun, FakeStudy  # noqa: E402


class SwitchStudy(FakeStudy):
    """Hand-made runs, with the real method -> run config (H3 matches baselines by their settings)."""

    train, teacher_ref = False, "run:teacher"

    def corrected_teacher_ref(self, variant):
        return "run:teacher-corrected"

    def run_config(self, method, strategy=None, seed=0, remove_every_tokens=None):
        from distill_lib.method_runs import run_config

        return run_config(self, method, strategy, seed, remove_every_tokens)


SWITCH_CFG = StudyConfig(
    methods=["tf", "kd-corrected", "kd", "kd-lr-2x", "kd-then-tf-25", "kd-then-tf-50"], seeds=[0, 1, 2, 3],
    seeds_by_method={m: [0, 1, 2, 3] for m in ("kd-then-tf-25", "kd-then-tf-50")},
    variants={"kd-lr-2x": {"method": "kd", "train": {"lr": 6e-4}},
              "kd-corrected": {"method": "kd", "teacher_correction_steps": 2},  # the same training, another teacher
              "kd-then-tf-25": {"method": "kd-then-tf", "train": {"kd_fraction": 0.25}},
              "kd-then-tf-50": {"method": "kd-then-tf", "train": {"kd_fraction": 0.5}}})


def switch_runs(end_25: float):
    """TF ends at val ppl 40 after 40 FLOPs; KD at 35 after 60; kd-then-tf-25 (11.25 FLOPs a step)
    at `end_25`, -50 (12.5 a step) at 45 (4 validation points each, linear in ppl)."""
    noise = [0.0, 0.3, -0.2, 0.1]
    runs = {}
    for s, n in enumerate(noise):
        runs["tf", s] = FakeRun(10, 100, 40 + n, test_ppl=40 + n)
        runs["kd", s] = FakeRun(15, 100, 35 + n, test_ppl=35 + n)
        runs["kd-lr-2x", s] = FakeRun(15, 100, 20, test_ppl=20)  # other settings: never H3's KD
        runs["kd-then-tf-25", s] = FakeRun(11.25, 100, end_25 - n, test_ppl=end_25 - n)
        runs["kd-then-tf-50", s] = FakeRun(12.5, 100, 45 + n, test_ppl=45 + n)
    return runs


@pytest.mark.parametrize("end_25, vs_tf, vs_kd", [(25.0, "supported", "supported"), (45.0, "refuted", "refuted")])
def test_h3_chooses_the_share_on_seed_0_and_judges_it_on_the_others_against_its_own_kd_and_tf(end_25, vs_tf, vs_kd):
    from distill_lib.findings import findings, matched_baselines

    study = SwitchStudy(SWITCH_CFG, switch_runs(end_25))
    assert matched_baselines(study, "kd-then-tf-25") == ("kd", "tf")  # not kd-lr-2x nor kd-corrected
    h3 = findings(study).set_index("comparison").loc[["vs TF, equal FLOPs", "vs KD, equal tokens"]]
    assert list(h3["verdict"]) == [vs_tf, vs_kd]
    assert set(h3["verdict seeds"]) == {"1, 2, 3"}
    # on seed 0 at TF's 40 FLOPs, -25 reads 34.0 (end 25) or 52.4 (end 45), -50 reads 58.9: -25 both times
    assert all(text.startswith("KD for 25% of tokens") and "kd-then-tf-25" in text for text in h3["ours"])
    assert set(h3["choice seeds"]) == {"0"}
    # the equal-tokens row is the paired log ratio of test ppls over the verdict seeds, in nats
    kd_ppl, own = [35 + n for n in (0.3, -0.2, 0.1)], [end_25 - n for n in (0.3, -0.2, 0.1)]
    expected = np.mean([math.log(k / o) for k, o in zip(kd_ppl, own)])
    assert h3.loc["vs KD, equal tokens", "diff"] == pytest.approx(expected, abs=1e-12)


def test_h3_is_not_tested_without_a_kd_then_tf_run():
    from distill_lib.findings import findings

    cfg = StudyConfig(methods=["tf", "kd"], seeds=[0, 1])
    h3 = findings(SwitchStudy(cfg, {})).set_index("hypothesis").loc["H3"]
    assert h3["verdict"] == "not tested" and "no kd-then-tf run" in h3["ours"]


def test_notebook_02s_comparison_reads_each_run_at_tfs_flops_with_its_kd_share():
    from distill_lib.findings import kd_then_tf_comparison

    runs, table = kd_then_tf_comparison(SwitchStudy(SWITCH_CFG, switch_runs(25.0)))
    assert list(runs) == ["TF", "KD", "KD then TF, KD for 25% of tokens", "KD then TF, KD for 50% of tokens"]
    row = table[(table.method == "KD then TF, KD for 25% of tokens") & (table.seed == 0)].iloc[0]
    assert row["KD share"] == 0.25 and row["FLOPs / TF's"] == pytest.approx(45 / 40)
    assert row["val ppl at TF's FLOPs"] == pytest.approx(math.exp(math.log(50) + (6.25 / 11.25) * math.log(25 / 50)))
    tf_row = table[(table.method == "TF") & (table.seed == 0)].iloc[0]
    assert tf_row["KD share"] == 0.0 and tf_row["val ppl at TF's FLOPs"] == pytest.approx(40)
    kd_row = table[(table.method == "KD") & (table.seed == 0)].iloc[0]
    assert kd_row["KD share"] == 1.0 and kd_row["FLOPs / TF's"] == pytest.approx(1.5)


def test_the_switch_change_is_the_validation_loss_just_after_the_switch_minus_just_before():
    from types import SimpleNamespace

    from distill_lib.findings import switch_change

    lines = [{"step": 10, "val_loss": 3.0}, {"step": 15}, {"step": 20, "val_loss": 2.5}, {"step": 30, "val_loss": 2.75},
             {"step": 40, "val_loss": 2.25}]
    run = SimpleNamespace(metrics=lambda: lines)
    assert switch_change(run, 20) == 0.25  # validated at the switch step itself: that is "before"
    assert switch_change(run, 25) == 0.25 and switch_change(run, 12) == -0.5
    assert math.isnan(switch_change(run, None)) and math.isnan(switch_change(run, 40))


def test_gradual_and_width_variants_change_the_training_and_keep_the_base_runs_names():
    """A variant of gradual removal or width pruning (the claims at the tuned rate) is the base run with
    its training changed, named after the variant; the base runs keep the names their records have."""
    from distill_lib.records import RECORDS_ROOT
    from distill_lib.runs import config_hash
    from distill_lib.study import Study, load_study_config

    cfg = load_study_config("smollm2")
    variants = {"gradual-lr-4x": {"method": "gradual", "train": {"lr": 0.0012}},
                "width-lr-4x": {"method": "width", "train": {"lr": 0.0012}}}
    cfg = dataclasses.replace(cfg, methods=[*cfg.methods, *variants], variants={**cfg.variants, **variants})
    study = Study(cfg, records=RECORDS_ROOT / "smollm2", train=False)  # teacher depth, width target: recorded
    recorded = {p.stem for p in (RECORDS_ROOT / "smollm2" / "runs").glob("*.json")}
    for base, variant, kw, names in (("gradual", "gradual-lr-4x", {"remove_every_tokens": 2048},
                                      ("gradual2048-max-gap-s1", "gradual-lr-4x-2048-max-gap-s1")),
                                     ("width", "width-lr-4x", {}, ("width-s1", "width-lr-4x-s1"))):
        plain, tuned = (study.run_config(m, seed=1, **kw) for m in (base, variant))
        assert (plain.name, tuned.name) == names and f"{plain.name}-{config_hash(plain)}" in recorded
        assert (plain.train.lr, tuned.train.lr) == (0.0003, 0.0012)
        assert dataclasses.replace(tuned, name=plain.name, train=dataclasses.replace(tuned.train, lr=0.0003)) == plain
