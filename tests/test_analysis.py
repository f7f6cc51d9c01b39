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


def test_the_budget_sweep_reads_kd_between_its_own_points_only():
    from distill_lib.claims import sweep_differences

    points = pd.DataFrame({"line": ["TF"] * 2 + ["KD"] * 2, "base": ["tf"] * 2 + ["kd"] * 2, "budget": [1, 2, 1, 2],
                           "flops": [100, 200, 150, 300], "test ppl": [50.0, 40.0, 45.0, 36.0]})
    diff = sweep_differences(points).set_index("budget")
    assert math.isnan(diff.loc[1, "KD - TF, equal FLOPs (nats)"])  # TF's 100 FLOPs: below KD's cheapest point
    assert diff.loc[2, "KD - TF, equal FLOPs (ppl)"] == pytest.approx(
        math.exp(np.interp(math.log(200), np.log([150, 300]), np.log([45.0, 36.0]))) - 40.0)


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
    from distill_lib.outputs import curves

    study = Study(SCORES, methods=("tf", "kd"))
    df = curves({"TF": [Run()], "KD": [Run()], "X": [Run()]})
    analysis.charge_extra_flops(study, df, ["kd", "offline-kd"])  # offline-kd: not in the profile
    assert df[df.method == "KD"].flops.tolist() == [15.0, 25.0, 35.0]
    assert df[df.method == "TF"].flops.tolist() == [10, 20, 30]


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
