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
        self.config = SimpleNamespace(train=SimpleNamespace(seed=seed, lr=0.001), name=name)
        self.curve, self.rates = curve, rates
        self.training = {"flops": curve[-1][0], "wall_seconds": 5.0 + seed, **(summary or {})}

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



def test_curve_panels_draw_a_row_per_frame_and_a_column_per_axis():
    from distill_lib.outputs import curves

    df = curves({"TF": [Run(seed=0), Run(seed=1)], "KD": [Run(seed=0)]})
    fig = plots.curve_panels([df, df[df.method == "TF"]], ["tokens", "flops"], panel=(5, 4), titles=["all", "TF only"])
    assert len(fig.axes) == 4 and tuple(fig.get_size_inches()) == (10, 8)
    assert [ax.get_title() for ax in fig.axes] == ["all", "", "TF only", ""]
    assert fig.axes[0].get_yscale() == "log" and fig.axes[1].get_xlabel() == "training compute (FLOPs, analytic)"
    assert [t.get_text() for t in fig.legends[0].texts] == ["TF (2 seeds)", "KD"]
    assert fig.legends[0].get_title().get_text() == plots.PPL_BANDS  # how the seeds are averaged, said once


def test_a_perplexity_band_is_taken_in_nats_and_never_reaches_below_one():
    import matplotlib.pyplot as plt
    from scipy import stats as st

    # two seeds far apart (10 and 1,000 ppl): in ppl the mean is 505 and the t-band reaches -5,800
    df = pd.DataFrame({"method": "TF", "seed": [0, 1], "tokens": [100, 100], "val_ppl": [10.0, 1000.0]})
    fig, ax = plt.subplots()
    plots.draw_curves(ax, df, "tokens", "val_ppl")
    assert ax.lines[0].get_ydata()[0] == pytest.approx(100.0)  # the geometric mean
    lo, hi = ax.collections[0].get_paths()[0].vertices[:, 1].min(), ax.collections[0].get_paths()[0].vertices[:, 1].max()
    half = st.t.ppf(0.975, 1) * math.log(100.0) / 2  # t(1) x sd/sqrt(2): sd of ln 10, ln 1000 is ln 100/sqrt(2)
    assert (lo, hi) == (pytest.approx(100.0 * math.exp(-half)), pytest.approx(100.0 * math.exp(half)))
    assert lo > 0 and lo * hi == pytest.approx(100.0 ** 2)  # symmetric on the log axis
    plt.close(fig)


def test_the_legend_says_how_seeds_are_averaged_only_where_a_perplexity_band_is_drawn():
    import matplotlib.pyplot as plt

    df = pd.DataFrame({"method": "TF", "seed": [0, 1], "tokens": [100, 100], "val_ppl": [10.0, 1000.0],
                       "val_loss": [2.3, 6.9]})
    titles = []
    for y in ("val_ppl", "val_loss"):  # a loss is averaged as it is: its band says nothing about nats
        fig, ax = plt.subplots()
        plots.draw_curves(ax, df, "tokens", y)
        ax.plot([1, 2], [1, 2], label="hand-drawn (3 seeds)")  # a label alone does not make a band
        plots.figure_legend(fig, ax)
        titles.append(fig.legends[0].get_title().get_text())
        plt.close(fig)
    assert titles == [plots.PPL_BANDS, ""]


def test_variants_are_drawn_in_shades_of_their_family():
    shades, styles = plots.family_styles({"Blues": ["TF", "TF, lr 2x"], "Oranges": ["KD"]})
    assert shades["KD"] == matplotlib.colormaps["Oranges"](0.75)  # a family of one: the middle shade
    assert shades["TF"] == matplotlib.colormaps["Blues"](0.45) and shades["TF, lr 2x"] == matplotlib.colormaps["Blues"](0.95)
    assert styles == {"TF": "-", "TF, lr 2x": "--", "KD": "-"}

# --- hand-made studies: runs by (method, strategy, seed) -------------------------------------------------
class RecordedStudy:
    """A study of hand-made runs (`runs[method, seed]` or `runs[method, strategy, seed]`), a real
    `StudyConfig` for names, labels, budgets and seeds, and test ppl per run."""

    def __init__(self, cfg, runs, test_ppl, extra=None, rates=None, truncations=None):
        self.cfg, self.runs, self.test_ppl, self.extra = cfg, runs, test_ppl, extra or {}
        self.rates, self.truncations = rates, truncations or {}

    def seeds(self, method):
        return self.cfg.seeds_of(method)

    def selector_seeds(self):
        return [0, 1]

    def student(self, method, strategy=None, seed=0, remove_every_tokens=None):
        return self.runs[(method, strategy, seed) if strategy else (method, seed)]

    def headline(self, run):
        return {"ppl": self.test_ppl[run.config.name], "avg_acc": 0.5}

    def extra_flops(self, method):
        return self.extra.get(method, 0.0)

    def step_rates(self):
        return self.rates

    def time_ratios(self, method):
        return [t / m for t, m in zip(self.rates["tf"], self.rates[method])], "timed side by side"

    def truncation(self, strategy):
        return self.truncations[strategy]


def _run(name, seed, curve, **summary):
    return Run(seed=seed, curve=curve, name=name, summary=summary)


def test_the_variants_table_reads_each_variant_at_tf_s_flops_charging_what_it_spends_first():
    from distill_lib.config import StudyConfig

    cfg = StudyConfig(methods=["tf", "kd", "offline-kd"], seeds=[0, 1], seeds_by_method={"offline-kd": [0]})
    runs = {("tf", s): _run(f"tf{s}", s, ((10, 3.0), (20, 2.0))) for s in (0, 1)}
    runs |= {("kd", s): _run(f"kd{s}", s, ((15, 2.8), (30, 1.8))) for s in (0, 1)}
    runs["offline-kd", 0] = _run("off", 0, ((10, 2.5), (20, 1.5)), teacher_cache={"bytes": 2**21, "build_seconds": 3.0})
    study = RecordedStudy(cfg, runs, {"tf0": 50, "tf1": 52, "kd0": 48, "kd1": 49, "off": 47}, extra={"offline-kd": 15.0})
    table = analysis.variants_table(study, ["tf", "kd", "offline-kd"], tf_flops=20)
    assert table.variant.tolist() == ["TF", "TF", "KD", "KD", "offline KD"] and table.seed.tolist() == [0, 1, 0, 1, 0]
    at = table["val ppl at TF's FLOPs"].tolist()
    assert at[0] == pytest.approx(math.exp(2.0)) and at[2] == pytest.approx(math.exp(2.8 - 1.0 * 5 / 15))
    assert math.isnan(at[4])  # offline KD's 15 FLOPs of cache: at TF's 20 it has trained 5, before its curve starts
    assert table["FLOPs vs TF"].tolist() == pytest.approx([1.0, 1.0, 1.5, 1.5, 35 / 20])
    assert table["teacher cache MiB"].tolist()[4] == 2.0 and table["test ppl"].tolist() == [50, 52, 48, 49, 47]
    without_cache = analysis.variants_table(study, ["tf", "kd"], tf_flops=20)
    assert "teacher cache MiB" not in without_cache and "cache build s" not in without_cache


def _sweep_study():
    from distill_lib.config import StudyConfig

    cfg = StudyConfig(methods=["tf", "kd", "tf-2x", "kd-2x"], seeds=[0, 1],
                      variants={"tf-2x": {"method": "tf", "budget": 2}, "kd-2x": {"method": "kd", "budget": 2}},
                      seeds_by_method={"tf-2x": [0, 1], "kd-2x": [0]})
    runs, ppl = {}, {}
    for m, flops, losses in [("tf", 10, (3.0, 2.0)), ("kd", 20, (2.6, 1.9)), ("tf-2x", 20, (3.0, 1.8)), ("kd-2x", 40, (2.6, 1.7))]:
        for s in cfg.seeds_of(m):
            run = _run(f"{m}-{s}", s, ((flops / 2, losses[0]), (flops, losses[1] + 0.1 * s)), tokens=100 * cfg.budget_of(m))
            runs[m, s], ppl[f"{m}-{s}"] = run, math.exp(losses[1] + 0.1 * s) + 1
    return RecordedStudy(cfg, runs, ppl)


def test_the_budget_sweep_has_a_line_per_method_named_after_its_1x_point():
    study = _sweep_study()
    sweep, points, differences = analysis.budget_sweep(study)
    assert sweep[["line", "budget", "seed"]].values.tolist() == [["TF", 1, 0], ["TF", 1, 1], ["KD", 1, 0], ["KD", 1, 1],
                                                                 ["TF", 2, 0], ["TF", 2, 1], ["KD", 2, 0]]
    assert points.seeds.tolist() == [2, 2, 2, 1] and points.tokens.tolist() == [100, 100, 200, 200]
    assert differences[["TF line", "KD line", "budget"]].values.tolist() == [["TF", "KD", 1], ["TF", "KD", 2]]
    # mid-run at budget 1: KD at TF's 10 FLOPs is its first evaluation (2.6), TF's final 2.0 (+0.1 at seed 1)
    row = differences.set_index("budget").loc[1]
    assert row["paired seeds, mid-run"] == 2
    assert row["KD - TF, equal FLOPs, mid-run (nats)"] == pytest.approx(np.mean([2.6 - 2.0, 2.6 - 2.1]))
    # paired over the two seeds: t(1) x sd / sqrt(2), sd of (0.6, 0.5) = 0.1 / sqrt(2)
    assert row["± 95% CI, mid-run (nats)"] == pytest.approx(12.7062047 * 0.05)
    assert np.isnan(differences.set_index("budget").loc[2, "± 95% CI, mid-run (nats)"])  # one pair: no interval


def test_no_budget_sweep_gives_three_empty_tables():
    from distill_lib.config import StudyConfig

    study = RecordedStudy(StudyConfig(methods=["tf", "kd"], seeds=[0]), {}, {})
    assert [len(t) for t in analysis.budget_sweep(study)] == [0, 0, 0]


def test_the_cost_table_compares_with_tf_and_drops_timings_that_are_no_cost():
    from distill_lib.config import StudyConfig

    fpt = {"tf": 6.0, "kd": 9.0}
    runs = {m: [Run(seed=s, rates=(r, r, r), summary={"flops_per_token": {"total": fpt[m]}}) for s in (0, 1)]
            for m, r in (("tf", 300.0), ("kd", 200.0))}
    labelled = {"TF": runs["tf"], "KD": runs["kd"]}
    timed = RecordedStudy(StudyConfig(methods=["tf", "kd"], seeds=[0, 1], timings_comparable=True), {}, {})
    cost = analysis.cost_table(timed, labelled).set_index("method")
    assert cost.loc["KD", "FLOPs ratio vs TF"] == 1.5 and cost.loc["KD", "time ratio vs TF"] == 1.5
    assert cost.loc["TF", "wall-clock s"] == 5.5  # the mean over seeds
    apart = RecordedStudy(StudyConfig(methods=["tf", "kd"], seeds=[0, 1], timings_comparable=False), {}, {})
    assert list(analysis.cost_table(apart, labelled).columns) == ["method", "FLOPs per token", "FLOPs ratio vs TF"]


def test_the_side_by_side_timing_has_a_column_per_round_and_none_where_runs_were_timed_alike():
    from distill_lib.config import StudyConfig

    cfg = StudyConfig(methods=["tf", "kd", "width"], seeds=[0], timings_comparable=False)
    study = RecordedStudy(cfg, {}, {}, rates={"kd": [50.0, 40.0], "tf": [100.0, 100.0], "width": [25.0, 50.0]})
    timing = analysis.step_rates_table(study)
    assert timing.method.tolist() == ["TF", "KD", "width"]  # the study's order, not the record's sorted keys
    assert timing["tokens/s, round 2"].tolist() == [100.0, 40.0, 50.0]
    assert timing["time per token vs TF (mean)"].tolist() == pytest.approx([1.0, 2.25, 3.0])
    alike = RecordedStudy(StudyConfig(methods=["tf"], seeds=[0], timings_comparable=True), {}, {})
    assert analysis.step_rates_table(alike) is None


# --- pruned against from scratch (C6) --------------------------------------------------------------------
def test_the_gap_over_tokens_is_scratch_minus_pruned_relative_to_pruned():
    from distill_lib.outputs import curves

    df = curves({"pruned": [Run(curve=((10, math.log(40)), (20, math.log(30))))],
                 "scratch": [Run(curve=((10, math.log(80)), (20, math.log(45))))]})
    gap = analysis.gap_over_tokens(df, "pruned", "scratch")
    assert gap.tokens.tolist() == [100, 200]
    assert gap["gap (scratch − pruned)"].tolist() == pytest.approx([40, 15])
    assert gap["gap / pruned"].tolist() == pytest.approx([1.0, 0.5])


def test_budget_pairs_match_budget_only_variants_with_their_shared_seeds():
    from distill_lib.config import StudyConfig

    cfg = StudyConfig(methods=["tf", "scratch", "tf-4x", "scratch-4x", "scratch-8x", "tf-8x-lr", "tf-2x", "scratch-2x"],
                      seeds=[0, 1, 2],
                      variants={"tf-4x": {"method": "tf", "budget": 4}, "scratch-4x": {"method": "scratch", "budget": 4},
                                "scratch-8x": {"method": "scratch", "budget": 8},  # its TF changes the rate too: no pair
                                "tf-8x-lr": {"method": "tf", "budget": 8, "train": {"lr": 0.1}},
                                "tf-2x": {"method": "tf", "budget": 2}, "scratch-2x": {"method": "scratch", "budget": 2}},
                      seeds_by_method={"tf-4x": [1, 2], "scratch-4x": [0, 1, 2], "tf-2x": [0], "scratch-2x": [1]})
    pairs = analysis.budget_pairs(RecordedStudy(cfg, {}, {}), "tf", "scratch")
    assert pairs == [(4, "tf-4x", "scratch-4x", [1, 2])]  # 2x: no seed both have


def test_the_gap_by_budget_reads_each_run_s_last_evaluation():
    from distill_lib.outputs import curves

    df = curves({"p": [Run(seed=s, curve=((10, math.log(40 + s)), (20, math.log(30 + s)))) for s in (0, 1)],
                 "s": [Run(seed=s, curve=((10, math.log(60)), (20, math.log(36 + 2 * s)))) for s in (0, 1)],
                 "p4": [Run(seed=0, curve=((10, math.log(30)), (40, math.log(20))))],
                 "s4": [Run(seed=0, curve=((10, math.log(50)), (40, math.log(22))))]})
    df["budget"] = df.method.map({"p": 1.0, "s": 1.0, "p4": 4.0, "s4": 4.0})
    table = analysis.gap_by_budget(df, {"p": "pruned", "s": "scratch", "p4": "pruned", "s4": "scratch"}).set_index("budget")
    assert table.loc[1.0, "pruned val ppl"] == pytest.approx(30.5) and table.loc[1.0, "from scratch val ppl"] == pytest.approx(37)
    assert table.loc[4.0, "gap (scratch − pruned)"] == pytest.approx(2) and table.loc[4.0, "gap / pruned"] == pytest.approx(0.1)
    assert table.seeds.tolist() == [2, 1] and table.tokens.tolist() == [200, 200]


# --- which layers to remove, how to heal -------------------------------------------------------------------
def test_truncations_that_keep_the_same_layers_are_grouped():
    kept = {"max-gap": [0, 2, 4, 7], "every-other": [0, 2, 4, 7], "output": [0, 1, 2, 7], "a": [0, 1], "b": [0, 1]}
    assert analysis.same_layers(kept) == [["max-gap", "every-other"], ["a", "b"]]
    assert analysis.same_layers({"max-gap": [0, 2]}) == []


def test_table6_and_the_recovery_curves_start_from_the_truncation():
    truncated = {"max-gap": {"kept": [0, 2, 3], "ppl_after_truncation": 900.0, "val_ppl_at_step_0": 1000.0},
                 "output": {"kept": [0, 1, 3], "ppl_after_truncation": 500.0, "val_ppl_at_step_0": 600.0}}
    runs = {("tf", "max-gap", s): _run(f"m{s}", s, ((10, 3.0), (20, 2.0))) for s in (0, 1)}
    runs["tf", "output", 0] = _run("o0", 0, ((10, 3.5), (20, 2.5)))
    study = RecordedStudy(None, runs, {"m0": 40.0, "m1": 42.0, "o0": 45.0})
    trained = {"max-gap": [runs["tf", "max-gap", s] for s in (0, 1)], "output": [runs["tf", "output", 0]]}
    table = analysis.configurations_table(study, trained, truncated, influence=[0.5, 0.1, 0.2, 0.9]).set_index("configuration")
    assert table.loc["max-gap", "removed block influence"] == pytest.approx(0.1)  # layer 1 removed
    assert table.loc["output", "removed block influence"] == pytest.approx(0.2)
    assert table.loc["max-gap", "ppl"] == 41.0 and table.loc["max-gap", "ppl_ci95"] > 0 and table.loc["max-gap", "seeds"] == 2
    assert math.isnan(table.loc["output", "ppl_ci95"]) and table.loc["output", "avg acc %"] == 50.0
    recovery = analysis.recovery_curves(trained, truncated)
    assert list(recovery.columns) == ["configuration", "seed", "step", "tokens", "val_ppl"]
    assert recovery[recovery.step == 0].val_ppl.tolist() == [1000.0, 1000.0, 600.0]
    assert recovery[recovery.configuration == "output"].step.tolist() == [0, 1, 2]


def test_the_healed_table_reads_selectors_and_paper_configurations_alike():
    truncations = {"ppl-removal": {"kept": [0, 1, 4, 7], "ppl_after_truncation": 60.0},
                   "max-gap": {"kept": [0, 2, 4, 7], "ppl_after_truncation": 80.0}}
    runs = {("tf", s, seed): _run(f"{s}{seed}", seed, ((10, 2.0),)) for s in truncations for seed in (0, 1)}
    study = RecordedStudy(None, runs, {"ppl-removal0": 47.0, "ppl-removal1": 47.5, "max-gap0": 48.0, "max-gap1": 48.5})
    healed = analysis.healed_table(study, truncations, selectors=["ppl-removal"])
    assert healed[["selection", "seed", "kind"]].values.tolist() == [
        ["ppl-removal", 0, "selector"], ["ppl-removal", 1, "selector"],
        ["max-gap", 0, "paper configuration"], ["max-gap", 1, "paper configuration"]]
    assert healed["kept layers"].tolist()[0] == "0 1 4 7" and healed["test ppl after healing"].tolist() == [47.0, 47.5, 48.0, 48.5]
    assert healed["ppl right after truncation"].tolist() == [60.0, 60.0, 80.0, 80.0]


def test_healing_methods_are_compared_at_the_cheapest_one_s_flops():
    from distill_lib.config import StudyConfig

    cfg = StudyConfig(methods=["tf", "tf-lora"], seeds=[0, 1], healing_strategy="best-block",
                      variants={"tf-lora": {"method": "tf", "healing": {"method": "lora"}}}, seeds_by_method={"tf-lora": [1]})
    runs = {("tf", "best-block", s): _run(f"full{s}", s, ((10, 3.0), (20, 2.0)), tokens=100, trainable_parameters=1000,
                                          optimizer_state_bytes=2**21) for s in (0, 1)}
    runs["tf-lora", "best-block", 1] = _run("lora1", 1, ((5, 3.2), (15, 2.4)), tokens=100, trainable_parameters=10,
                                            optimizer_state_bytes=2**20)
    study = RecordedStudy(cfg, runs, {"full0": 40.0, "full1": 41.0, "lora1": 44.0})
    groups = analysis.healing_runs(study, ["tf-lora"])
    assert list(groups) == ["full", "lora"] and [r.config.name for r in groups["full"]] == ["full1"]  # lora's seed only
    flops = analysis.mean_training_flops(groups)
    assert flops.to_dict() == {"full": 20, "lora": 15}
    table = analysis.healing_table(study, groups, at_flops=flops.min()).set_index("healing")
    assert table.loc["full", "val ppl at equal FLOPs"] == pytest.approx(math.exp(2.5))
    assert table.loc["lora", "val ppl at equal FLOPs"] == pytest.approx(math.exp(2.4))
    assert table.loc["lora", "optimizer state MiB"] == 1.0 and math.isnan(table.loc["lora", "tokens/s"])
    assert table.loc["lora", "test ppl at the end"] == 44.0


def test_healers_are_compared_with_full_continued_pretraining_at_their_own_rate():
    from distill_lib.config import StudyConfig

    lora = {"method": "lora"}
    variants = {"tf-4x": {"method": "tf", "train": {"lr": 0.004}, "calibration_split": "train"},
                "tf-lora": {"method": "tf", "healing": lora},
                "tf-lora-train": {"method": "tf", "healing": lora, "calibration_split": "train"},
                "tf-lora-4x": {"method": "tf", "healing": lora, "train": {"lr": 0.004}, "calibration_split": "train"},
                "tf-lora-4x-val": {"method": "tf", "healing": lora, "train": {"lr": 0.004}},  # calibrated elsewhere
                "tf-lora-2x": {"method": "tf", "healing": lora, "train": {"lr": 0.002}, "calibration_split": "train"},
                "tf-lora-r16": {"method": "tf", "healing": {"method": "lora", "lora_rank": 16}}}
    cfg = StudyConfig(methods=["tf", "tf-4x", *variants], seeds=[0], variants=variants, tuned={"tf": "tf-4x"})
    assert analysis.healers_by_rate(cfg) == {"lr 0.001": ("tf", ["tf-lora", "tf-lora-r16"]),  # not 2x: neither rate
                                             "lr 0.004 (tuned)": ("tf-4x", ["tf-lora-train", "tf-lora-4x"])}
    assert analysis.healing_labels(cfg, ["tf-lora", "tf-lora-r16"]) == {"full": "tf", "lora": "tf-lora", "tf-lora-r16": "tf-lora-r16"}
    runs = {(m, "best-block", 0): _run(m, 0, ((10, 3.0),), tokens=100) for m in ("tf-4x", "tf-lora-train", "tf-lora-4x")}
    groups = analysis.healing_runs(RecordedStudy(cfg, runs, {}), ["tf-lora-train", "tf-lora-4x"], full="tf-4x")
    assert {label: [r.config.name for r in rs] for label, rs in groups.items()} == {
        "full": ["tf-4x"], "lora, lr 0.001": ["tf-lora-train"], "lora": ["tf-lora-4x"]}  # a healer's rate named where it differs
    cfg = StudyConfig(methods=["tf", "tf-4x", "tf-lora"], seeds=[0], variants={k: variants[k] for k in ("tf-4x", "tf-lora")},
                      tuned={"tf": "tf-4x"})
    assert list(analysis.healers_by_rate(cfg)) == ["lr 0.001"]  # no healer at the tuned rate recorded yet


# --- the notebooks stay thin ---------------------------------------------------------------------------
def _code_lines(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_every_notebook_is_a_question_a_library_call_a_figure_and_its_reading():
    """At most 80 lines of code each (what they compute from records is in `analysis`, what they draw
    in `plots`), and none reads a method, a model or a budget back out of a display label."""
    import re

    from distill_lib.runner import NOTEBOOKS

    parsing = re.compile(r"\.(rsplit|split|removesuffix|removeprefix|startswith|endswith|partition)\(|\.str\.")
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        code = _code_lines(path)
        assert len(code) <= 80, f"{path.name}: {len(code)} lines of code"
        assert not [line for line in code if parsing.search(line)], path.name


def test_configurations_at_both_rates_read_each_rates_own_runs_and_show_what_is_missing():
    from distill_lib.records import MissingRecord
    from distill_lib.study import StudyConfig

    ppl = {("tf", "max-gap", 0): 40.0, ("tf", "max-gap", 1): 44.0, ("tf", "output", 0): 60.0, ("tf", "output", 1): 62.0,
           ("tf-4x", "max-gap", 0): 30.0, ("tf-4x", "max-gap", 1): 34.0}  # output at the tuned rate: not recorded

    class Study:
        cfg = StudyConfig(methods=["tf", "tf-4x"], seeds=[0, 1], configs=["max-gap", "output"],
                          variants={"tf-4x": {"method": "tf", "train": {"lr": 0.004}}}, tuned={"tf": "tf-4x"})

        def config_seeds(self):
            return [0, 1]

        def student(self, method, strategy=None, seed=0, remove_every_tokens=None):
            if (method, strategy, seed) not in ppl:
                raise MissingRecord("missing", what=f"run {method}-{strategy}-s{seed}")
            return (method, strategy, seed)

        def headline(self, run):
            return {"ppl": ppl[run]}

    table = analysis.configurations_at_both_rates(Study(), ["max-gap", "output"]).set_index("configuration")
    assert list(table.columns) == ["test ppl, lr 0.001", "seeds, lr 0.001", "test ppl, lr 0.004 (tuned)",
                                   "seeds, lr 0.004 (tuned)", "tuned - base (nats)"]
    assert table.loc["max-gap"].tolist() == pytest.approx([42.0, 2, 32.0, 2, math.log(32 / 42)])
    assert table.loc["output", "test ppl, lr 0.001"] == 61.0 and table.loc["output", "seeds, lr 0.004 (tuned)"] == 0
    assert math.isnan(table.loc["output", "test ppl, lr 0.004 (tuned)"])
    Study.cfg = StudyConfig(methods=["tf"], configs=["max-gap"])  # no tuned rate: nothing to show
    assert analysis.configurations_at_both_rates(Study(), ["max-gap"]).empty
