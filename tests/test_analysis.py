"""What the notebooks read from records (`distill_lib.analysis`), on hand-made runs: the one
interpolation rule, the curve readings, the per-seed tables and the figures several notebooks draw."""
import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

from distill_lib import analysis, plots

matplotlib.use("Agg")


class Run:
    """A recorded run as the notebooks read it: a seed, a summary, a validation curve and logged
    steps (tokens/s)."""

    def __init__(self, seed=0, curve=((10, 3.0), (20, 2.0), (30, 1.5)), rates=(100.0, 300.0, 200.0, 900.0),
                 summary=None, name="run"):
        self.config = SimpleNamespace(train=SimpleNamespace(seed=seed), name=name)
        self.curve, self.rates = curve, rates
        self.summary = {"summary": {"flops": curve[-1][0], "wall_seconds": 5.0 + seed, **(summary or {})}}

    def metrics(self):
        steps = [{"step": i + 1, "tokens_per_s": r} for i, r in enumerate(self.rates)]
        for i, (flops, loss) in enumerate(self.curve):  # an evaluation is logged with its step
            steps[i].update(flops=flops, tokens=100 * (i + 1), wall_seconds=float(i), val_loss=loss,
                            val_ppl=math.exp(loss))
        return steps


class Study:
    """Headline scores per run, labels per method."""

    def __init__(self, scores, methods=("tf", "kd")):
        self.scores = scores
        self.cfg = SimpleNamespace(methods=list(methods), label=lambda m: m.upper())

    def headline(self, run):
        return self.scores[run.config.train.seed]

    def extra_flops(self, method):
        return {"kd": 5.0}.get(method, 0.0)


# --- the one interpolation rule ----------------------------------------------------------------------
def test_interpolate_reads_between_points_and_is_nan_outside_the_curve():
    xs, ys = [0, 10, 20], [5.0, 3.0, 2.0]
    assert analysis.interpolate(xs, ys, 15) == 2.5
    assert analysis.interpolate(xs, ys, 0) == 5.0 and analysis.interpolate(xs, ys, 20) == 2.0  # the ends are measured
    assert math.isnan(analysis.interpolate(xs, ys, -0.001))
    assert math.isnan(analysis.interpolate(xs, ys, 20.001))
    assert math.isnan(analysis.interpolate([], [], 1.0))
    assert math.isnan(analysis.interpolate(xs, ys, math.nan))


def test_val_ppl_at_flops_interpolates_in_loss_and_is_nan_beyond_the_run():
    run = Run(curve=((10, 3.0), (20, 2.0), (30, 1.5)))
    assert analysis.val_ppl_at_flops(run, 15) == pytest.approx(math.exp(2.5))
    assert analysis.val_ppl_at_flops(run, 30) == pytest.approx(math.exp(1.5))
    assert math.isnan(analysis.val_ppl_at_flops(run, 31)) and math.isnan(analysis.val_ppl_at_flops(run, 5))


def test_the_claims_refuse_a_reading_outside_the_curve():
    from distill_lib.claims import _at_flops

    run = Run()
    assert _at_flops(run, 20) == pytest.approx(math.exp(2.0))
    with pytest.raises(ValueError, match="outside the run's validation curve"):
        _at_flops(run, 40)


def test_final_val_ppl_and_median_tokens_per_s():
    run = Run(curve=((10, 3.0), (20, 2.0)), rates=(100.0, 300.0, 200.0, 900.0))
    assert analysis.final_val_ppl(run) == pytest.approx(math.exp(2.0))  # the last evaluation, not the last step
    assert analysis.median_tokens_per_s(run) == 250.0  # every logged step, the first's warm-up included


def test_the_budget_sweep_is_read_at_equal_tokens_and_by_interpolation_at_equal_flops():
    # TF: 1 FLOP per token; KD: 2 (its teacher). KD's test ppl falls 100 -> 50 -> 25 as FLOPs double.
    points = pd.DataFrame([
        {"line": "TF", "base": "tf", "budget": b, "flops": 100 * b, "test ppl": p} for b, p in [(0.5, 80), (1, 60), (2, 40)]
    ] + [{"line": "KD", "base": "kd", "budget": b, "flops": 200 * b, "test ppl": p} for b, p in [(0.5, 100), (1, 50), (2, 25)]])
    table = analysis.sweep_differences(points).set_index("budget")
    assert table["KD - TF, equal tokens (ppl)"].tolist() == [20, -10, -15]
    assert table["KD - TF, equal tokens (nats)"].tolist() == pytest.approx([math.log(100 / 80), math.log(50 / 60),
                                                                            math.log(25 / 40)])
    # at TF's 50 FLOPs KD has no point (its line starts at 100): no reading; at TF's 100 FLOPs KD's
    # 0.5x point (100 ppl); at TF's 200 FLOPs KD's 1x point (50 ppl)
    assert math.isnan(table.loc[0.5, "KD - TF, equal FLOPs (ppl)"])
    assert table.loc[1, "KD - TF, equal FLOPs (ppl)"] == pytest.approx(100 - 60)
    assert table.loc[2, "KD - TF, equal FLOPs (ppl)"] == pytest.approx(50 - 40)
    assert table.loc[2, "KD - TF, equal FLOPs (nats)"] == pytest.approx(math.log(50 / 40))
    points.loc[points.line == "KD", "flops"] = [150, 300, 600]  # between points: geometric interpolation
    table = analysis.sweep_differences(points).set_index("budget")
    # TF's 200 FLOPs lie log(200/150)/log(2) of the way from KD's 150 to its 300 (100 -> 50 ppl)
    assert table.loc[2, "KD - TF, equal FLOPs (ppl)"] == pytest.approx(100 * 0.5 ** (math.log(200 / 150) / math.log(2)) - 40)
    # with learning rates, a TF line meets only the KD lines at its rate
    tuned = pd.DataFrame([{"line": "KD, lr 4x", "base": "kd", "budget": 1, "flops": 200, "test ppl": 30, "lr": 4.0}])
    points["lr"] = 1.0
    lines = analysis.sweep_differences(pd.concat([points, tuned]))[["TF line", "KD line"]].drop_duplicates()
    assert lines.values.tolist() == [["TF", "KD"]]


# --- per-seed tables -------------------------------------------------------------------------------------
SCORES = {0: {"ppl": 40.0, "bits_per_byte": 1.2, "a/acc": 0.5, "b/acc_norm": 0.25, "c/bits_per_byte": 1.0,
              "avg_acc": 0.375, "avg_acc_stderr": 0.01},
          1: {"ppl": 44.0, "bits_per_byte": 1.3, "a/acc": 0.7, "b/acc_norm": 0.45, "c/bits_per_byte": 1.1,
              "avg_acc": 0.575, "avg_acc_stderr": 0.02}}


def test_the_per_seed_table_has_a_row_per_run_with_its_label_seed_headline_and_extras():
    study = Study(SCORES)
    runs = {"TF": [Run(seed=0), Run(seed=1)], "KD": [Run(seed=1)]}
    timed = SimpleNamespace(timings_comparable=True)
    table = analysis.per_seed_table(study, runs, by="schedule", extra=lambda run: analysis.wall_clock(timed, run))
    assert list(table.columns) == ["schedule", "seed", "ppl", "bits_per_byte", "a/acc", "b/acc_norm",
                                   "c/bits_per_byte", "avg_acc", "wall-clock s"]
    assert table.schedule.tolist() == ["TF", "TF", "KD"] and table.seed.tolist() == [0, 1, 1]
    assert table.avg_acc.tolist() == pytest.approx([37.5, 57.5, 57.5])  # the average in percent
    assert table["a/acc"].tolist() == [0.5, 0.7, 0.7]  # each task's own column stays a fraction
    assert table["wall-clock s"].tolist() == [5.0, 6.0, 6.0]
    assert analysis.wall_clock(SimpleNamespace(timings_comparable=False), Run()) == {}  # no cost where timed apart


def test_tasks_in_percent_turns_every_accuracy_and_nothing_else_into_percent():
    table = analysis.per_seed_table(Study(SCORES), {"TF": [Run(seed=0)]}, tasks_in_percent=True)
    row = table.iloc[0]
    assert (row["a/acc"], row["b/acc_norm"], row["avg_acc"]) == pytest.approx((50.0, 25.0, 37.5))
    assert (row["ppl"], row["c/bits_per_byte"]) == (40.0, 1.0)


def test_a_headline_table_without_accuracies_is_left_as_it_is():
    table = analysis.headline_table([{"model": "teacher", "ppl": 30.0}, {"model": "student", "ppl": 33.0}])
    assert table.to_dict("list") == {"model": ["teacher", "student"], "ppl": [30.0, 33.0]}


def test_charged_curves_start_late_by_the_method_s_extra_flops():
    study = Study(SCORES, methods=("tf", "kd"))
    df = analysis.charged_curves(study, {"TF": [Run()], "KD": [Run()], "X": [Run()]}, ["kd", "offline-kd"])
    assert df[df.method == "KD"].flops.tolist() == [15.0, 25.0, 35.0]  # offline-kd: not in the profile, no charge
    assert df[df.method == "TF"].flops.tolist() == [10, 20, 30] and df[df.method == "X"].flops.tolist() == [10, 20, 30]


def test_last_evaluations_average_each_seed_s_last_point():
    from distill_lib.outputs import curves

    df = curves({"TF": [Run(seed=0, curve=((10, 3.0), (20, 2.0))), Run(seed=1, curve=((10, 3.0), (20, 1.0)))]})
    ends = analysis.last_evaluations(df)
    assert ends.val_ppl["TF"] == pytest.approx((math.exp(2.0) + math.exp(1.0)) / 2)
    assert ends.flops["TF"] == 20


# --- figures ---------------------------------------------------------------------------------------------
def test_the_layer_grid_draws_one_row_per_truncation_kept_layers_dark():
    fig = plots.layer_grid({"max-gap": [0, 2, 4, 7], "output": [0, 1, 2, 7]}, 8, "kept")
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    assert grid.tolist() == [[1, 0, 1, 0, 1, 0, 0, 1], [1, 1, 1, 0, 0, 0, 0, 1]]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["max-gap", "output"] and ax.get_title() == "kept"
