"""Which layers a truncation keeps, from the configuration alone: `drop_count` (how many go),
`select_layers` (a strategy name and an amount -> the kept layer indices, or from importance scores
computed elsewhere) and `keep_from_removed`. Plain index arithmetic, no torch: a run's config (gradual
removal's order, the half-depth model's size) and a notebook's drawing of the configurations (v3 Fig
5) need no model. `distill_lib.truncate` scores layers and builds the truncated model."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from distill_lib.names import IMPORTANCE_STRATEGIES, PAPER_STRATEGIES, STRATEGIES  # noqa: F401
from distill_lib.run_config import check_drop
from distill_lib.schema import ConfigError
from distill_lib.storage import write_json_atomic


def drop_count(n_layers: int, drop: int | float) -> int:
    """Layers to remove: an int is a number of layers, a float in (0, 1) a fraction of the stack
    (rounded). 1.0 and 2.0 are floats, so they are refused (write 1 or 2 for a number of layers)."""
    if isinstance(drop, bool) or not isinstance(drop, (int, float)):
        raise ConfigError(f"drop: expected a number of layers (an integer) or a fraction in (0, 1), got {drop!r}")
    check_drop(drop)
    count = round(n_layers * drop) if isinstance(drop, float) else drop
    if not 0 < count < n_layers:
        given = f"{drop} of {n_layers} layers rounds to {count}" if isinstance(drop, float) else f"got {drop}"
        raise ConfigError(f"drop: must remove between 1 and {n_layers - 1} of the {n_layers} layers, {given}")
    return int(count)


def _check_interior(n_layers: int, k: int, strategy: str) -> None:
    if k > n_layers - 2:
        raise ConfigError(f"drop: strategy {strategy!r} keeps the first and last layer, so at most "
                          f"{n_layers - 2} of {n_layers} layers can be removed, got {k}")


def select_layers(strategy: str, n_layers: int, drop: int | float | None = None,
                  remove: Sequence[int] | None = None, scores: Sequence | None = None,
                  keep_ends: bool = True) -> list[int]:
    """Indices of the layers to keep (ascending) for a named strategy (0-based teacher indices; see
    LAYER_NUMBERING).

    The paper's five (first and last layer always kept; readings *inferred* from v3 Fig 5):
      max-gap  removed layers spread evenly over the interior (one per equal-width bin: every other layer)
      input    one contiguous block right after the first layer
      output   one contiguous block right before the last layer
      middle   one contiguous block centred in the stack
      both     half the block after the first layer, the other half (the larger one if odd) before the last
    Others:
      first        keep the first n - drop layers (the last layer goes too)
      every-other  remove layers 1, 3, 5, ... (the first `drop` odd indices)
      explicit     remove exactly `remove`
      block-influence  remove the `drop` interior layers with the lowest `scores` (block influence)
      angular      remove the contiguous interior block of `drop` layers starting at argmin `scores`
                   (scores[l] = angular distance between the input of layer l and of layer l + drop)
      ppl-removal  remove the `drop` interior layers with the lowest `scores` (calibration perplexity
                   of the model without that one layer; Kim et al., Shortened LLaMA)
      ppl-iterative  replay the greedy removal: step t removes the remaining interior layer with the
                   lowest scores[t][l] (perplexity with the t earlier removals and l; SLEB)
      best-block   remove the interior block of `drop` layers starting at argmin `scores` (scores[s] =
                   calibration perplexity without layers s .. s + drop - 1)
      taylor       remove the `drop` interior layers with the lowest `scores` (sum of |θ·∂L/∂θ|)
    Ties go to the lower index. The importance strategies keep the first and last layer (they are
    never candidates) unless `keep_ends=False`; the named strategies always follow their definition.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: unknown {strategy!r} (valid: {', '.join(STRATEGIES)})")
    if n_layers < 1:
        raise ConfigError(f"n_layers: must be >= 1, got {n_layers}")
    everything = list(range(n_layers))
    if not keep_ends and strategy not in IMPORTANCE_STRATEGIES:
        raise ConfigError(f"keep_ends: only the importance strategies ({', '.join(IMPORTANCE_STRATEGIES)}) can "
                          f"remove the first or last layer; {strategy!r} is defined by its name")
    if strategy == "explicit":
        if remove is None:
            raise ConfigError("remove: strategy 'explicit' needs the list of layer indices to remove")
        return keep_from_removed(n_layers, remove)
    if drop is None:
        raise ConfigError(f"drop: strategy {strategy!r} needs the number (or fraction) of layers to drop")
    k = drop_count(n_layers, drop)
    interior = everything[1:-1]
    if strategy == "first":
        removed = everything[n_layers - k:]
    elif strategy == "every-other":
        odd = everything[1::2]
        if k > len(odd):
            raise ConfigError(f"drop: 'every-other' can remove at most {len(odd)} of {n_layers} layers, got {k}")
        removed = odd[:k]
    elif strategy in IMPORTANCE_STRATEGIES:
        removed = _select_by_scores(strategy, n_layers, k, scores, keep_ends)
    else:
        _check_interior(n_layers, k, strategy)
        m = len(interior)
        if strategy == "max-gap":
            # one removed layer per equal-width bin of the interior, taken at the bin's centre
            removed = [interior[math.floor((i + 0.5) * m / k)] for i in range(k)]
        elif strategy == "input":
            removed = interior[:k]
        elif strategy == "output":
            removed = interior[m - k:]
        elif strategy == "middle":
            start = (m - k) // 2
            removed = interior[start:start + k]
        else:  # both
            removed = interior[: k // 2] + interior[m - (k - k // 2):]
    return keep_from_removed(n_layers, removed)


def _select_by_scores(strategy: str, n_layers: int, k: int, scores, keep_ends: bool) -> list[int]:
    """The removed layers of an importance strategy, from its scores (see select_layers)."""
    if keep_ends:
        _check_interior(n_layers, k, strategy)
    candidates = list(range(1, n_layers - 1)) if keep_ends else list(range(n_layers))
    if strategy in ("angular", "best-block"):  # one block [start, start + k) of candidates
        _check_scores(scores, n_layers - k + 1, strategy)
        starts = range(1, n_layers - k) if keep_ends else range(0, n_layers - k + 1)
        start = min(starts, key=lambda s: (scores[s], s))
        return list(range(start, start + k))
    if strategy == "ppl-iterative":  # scores[t]: one row per greedy step
        _check_scores(scores, k, strategy)
        removed: list[int] = []
        for t in range(k):
            row = scores[t]
            remaining = [l for l in candidates if l not in removed]
            if len(row) != n_layers or any(row[l] is None for l in remaining):
                raise ConfigError(f"scores: strategy 'ppl-iterative' step {t} needs a score for each remaining "
                                  f"candidate layer ({remaining}) in a row of {n_layers}")
            removed.append(min(remaining, key=lambda l: (row[l], l)))
        return removed
    # block-influence, ppl-removal, taylor: the k lowest-scored candidates
    _check_scores(scores, n_layers, strategy)
    return sorted(candidates, key=lambda i: (scores[i], i))[:k]


def _check_scores(scores, expected: int, strategy: str) -> None:
    if scores is None or len(scores) < expected:
        raise ConfigError(f"scores: strategy {strategy!r} needs importance scores (layer_importance)")


def keep_from_removed(n_layers: int, removed: Sequence[int]) -> list[int]:
    removed = list(removed)
    _check_indices(removed, n_layers, "remove")
    keep = [i for i in range(n_layers) if i not in set(removed)]
    if not keep:
        raise ConfigError(f"remove: removing all {n_layers} layers keeps none")
    return keep


def _check_indices(indices: Sequence[int], n_layers: int, name: str) -> None:
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers:
            raise ConfigError(f"{name}: layer index {i!r} is out of range 0..{n_layers - 1}")
    if len(set(indices)) != len(indices):
        dup = sorted({i for i in indices if list(indices).count(i) > 1})
        raise ConfigError(f"{name}: duplicate layer index {dup[0]}")


# ---------------------------------------------------------------------------------------------
# The selection record: which layers a student kept and why
# ---------------------------------------------------------------------------------------------
def selection_record(strategy: str, n_layers: int, keep: Sequence[int], drop: int | float | None = None,
                     scored: dict | None = None, keep_ends: bool = True,
                     calibration_ids=None) -> dict:
    """What a student's layers are and why, as plain JSON: the teacher's depth, the kept and removed
    teacher layers (0-based, see truncate.LAYER_NUMBERING), the strategy, and for importance strategies the
    scores, what they mean, the full model's calibration perplexity and the calibration size.
    `truncate_by_strategy` stores it as the student's `config.layer_selection` (so it is saved in
    its config.json); `write_layer_selection` puts it in a run folder."""
    keep = list(keep)
    record = {"strategy": strategy, "drop": drop, "teacher_layers": n_layers, "keep": keep,
              "removed": [i for i in range(n_layers) if i not in set(keep)],
              "keep_ends": keep_ends, "numbering": "0-based teacher layer indices; first = 0, last = n - 1"}
    if scored is not None:
        record.update(scores=scored["scores"], score_meaning=scored["meaning"])
        if "full_ppl" in scored:
            record["full_ppl"] = scored["full_ppl"]
        if "order" in scored:
            record["removal_order"] = scored["order"]
    if calibration_ids is not None:
        record["calibration"] = {"blocks": int(calibration_ids.shape[0]), "block_length": int(calibration_ids.shape[1])}
    return record


#: File name of the selection record in a run folder (`write_layer_selection`).
LAYER_SELECTION_FILE = "layer_selection.json"


def layer_selection(model_or_folder) -> dict | None:
    """The selection record of a student (a model, or an HF folder: read from its config.json
    without loading weights); None when it was not made by `truncate_by_strategy`."""
    if hasattr(model_or_folder, "config"):  # a model (its config is an HF config object)
        return getattr(model_or_folder.config, "layer_selection", None)
    config = Path(model_or_folder) / "config.json"
    if not config.is_file():
        raise ConfigError(f"model: {str(model_or_folder)!r} is not an HF model folder (no config.json)")
    return json.loads(config.read_text()).get("layer_selection")


def write_layer_selection(run_dir: Path | str, model_or_folder) -> Path | None:
    """Write the student's selection record to `run_dir/layer_selection.json` (atomic); returns the
    path, or None (nothing written) when the student has no record."""
    record = layer_selection(model_or_folder)
    if record is None:
        return None
    return write_json_atomic(Path(run_dir) / LAYER_SELECTION_FILE, record)
