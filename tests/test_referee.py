"""A referee's check of the committed SmolLM2 claims: C1, C5 and C8 (every rate, every weighting and
schedule) and Holm's adjustment recomputed from the raw run records with json, numpy and scipy only,
not with `distill_lib`, then compared with `figures/smollm2/99_claims.csv`, what the README quotes.
A verdict that the library computed differently from what its rule says fails here."""
import csv
import glob
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "records" / "smollm2" / "runs"
CLAIMS = ROOT / "figures" / "smollm2" / "99_claims.csv"
ALPHA = 0.025  # each one-sided test, and Holm's family, as the README's rules state


def claim_rows() -> list[dict]:
    with open(CLAIMS, newline="") as f:
        return list(csv.DictReader(f))


def record(name: str, seed: int) -> dict:
    """The one record of run `name` at `seed` (files are `NAME-sSEED-HASH.json`)."""
    found = glob.glob(str(RUNS / f"{name}-s{seed}-*.json"))
    assert len(found) == 1, f"{name} seed {seed}: {found}"
    return json.loads(Path(found[0]).read_text())


def loss_on_test(run: dict) -> float:
    """Mean per-token loss on the test split (the claims' 'test ppl' is its exponential)."""
    (loss,) = {e["perplexity"]["loss"] for e in run["evaluations"].values()
               if "perplexity" in e and e["eval_config"]["ppl_split"] == "test"}
    return loss


def val_loss_at_flops(run: dict, flops: float) -> float:
    """The validation curve read at `flops`, linearly in loss between evaluations."""
    points = [(m["flops"], m["val_loss"]) for m in run["metrics"] if "val_loss" in m]
    assert points[0][0] <= flops <= points[-1][0], "outside the measured curve"
    return float(np.interp(flops, *zip(*points)))


def final_val_loss(run: dict) -> float:
    return [m["val_loss"] for m in run["metrics"] if "val_loss" in m][-1]


def t_test(diffs: list[float], kind: str, margin: float) -> dict:
    """Mean, 95% half-interval and the verdict's p: one-sided t-tests on paired differences, positive
    the paper's way. Superiority: mean > 0; non-inferiority: mean > -margin."""
    d = np.asarray(diffs)
    se = d.std(ddof=1) / math.sqrt(len(d))
    bound = 0.0 if kind == "superiority" else -margin
    p_yes = stats.t.sf((d.mean() - bound) / se, len(d) - 1)
    p_no = stats.t.cdf((d.mean() - bound) / se, len(d) - 1)
    verdict = "reproduced" if p_yes < ALPHA else "not reproduced" if p_no < ALPHA else "inconclusive"
    p = p_yes if verdict == "reproduced" else p_no if verdict == "not reproduced" else min(p_yes, p_no)
    return {"diff": d.mean(), "ci95": stats.t.ppf(0.975, len(d) - 1) * se, "p": p, "verdict": verdict}


def tf_run(comparison: str) -> str:
    return "tf-lr-4x-max-gap" if "(tuned)" in comparison else "tf-max-gap"


def recomputed(row: dict) -> dict:
    """The row's test from the records, with the reading its rule names."""
    seeds = [int(s) for s in row["verdict seeds"].split(", ")]
    tuned = "(tuned)" in row["comparison"]
    tf = {s: record(tf_run(row["comparison"]), s) for s in seeds}
    if row["claim"] == "C1":  # random init's test loss over TF's, equal tokens
        diffs = [loss_on_test(record("random-max-gap", s)) - loss_on_test(tf[s]) for s in seeds]
    elif row["claim"] == "C5":  # gradual's test loss over one-shot's
        every = row["comparison"].split("every ")[1].split(" tokens")[0].replace(",", "")
        name = f"gradual-lr-4x-{every}-max-gap" if tuned else f"gradual{every}-max-gap"
        diffs = [loss_on_test(record(name, s)) - loss_on_test(tf[s]) for s in seeds]
    else:  # C8: CHOP+distill's val loss at TF's total FLOPs over TF's final val loss
        weighting = row["comparison"].split(",")[0]
        method = "chop-distill" if weighting == "paper's unweighted sum" else weighting
        name = f"{method}-lr-4x-max-gap" if tuned else f"{method}-max-gap"
        diffs = [val_loss_at_flops(record(name, s), tf[s]["summary"]["final"]["flops"]) - final_val_loss(tf[s])
                 for s in seeds]
    return t_test(diffs, row["test"], float(row["margin"] or 0))


REFEREED = [r for r in claim_rows() if r["claim"] in ("C1", "C5", "C8") and r["p"]]


@pytest.mark.parametrize("row", REFEREED, ids=[f"{r['claim']}: {r['comparison']}" for r in REFEREED])
def test_a_referee_recomputes_the_claim_from_the_raw_records(row):
    mine = recomputed(row)
    assert mine["verdict"] == row["verdict"]
    assert mine["diff"] == pytest.approx(float(row["diff"]), rel=1e-6)
    assert mine["ci95"] == pytest.approx(float(row["ci95"]), rel=1e-6)
    assert mine["p"] == pytest.approx(float(row["p"]), rel=1e-6)


def test_holms_adjustment_is_recomputed_from_the_tables_p_values():
    """Holm over every row with a p: the k-th smallest times (m - k + 1), running maximum, capped at 1."""
    rows = [r for r in claim_rows() if r["p"]]
    order = sorted(range(len(rows)), key=lambda i: float(rows[i]["p"]))
    adjusted, running = {}, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(rows) - k) * float(rows[i]["p"])))
        adjusted[i] = running
    assert len(REFEREED) >= 5  # C1, C5 at 3e-4 twice, C8 twice: the records above exist
    for i, row in enumerate(rows):
        assert float(row["holm p"]) == pytest.approx(adjusted[i], rel=1e-9), row["comparison"]
        # a verdict whose adjusted p is not below ALPHA is inconclusive after the adjustment
        assert row["holm verdict"] == (row["verdict"] if adjusted[i] < ALPHA else "inconclusive"), row["comparison"]
