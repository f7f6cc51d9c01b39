"""What a study's methods cost: the FLOPs a method's runs need besides their own training (a
teacher correction, offline KD's logit cache), the teacher's forward FLOPs per token, and time per
token against TF's (from the runs themselves, or from the side-by-side timing of
`distill_lib.timing`). Functions of a `Study` (`distill_lib.study`), which delegates to them; what
they compute once is recorded through `study.result`."""
from __future__ import annotations

from distill_lib import methods

#: what `step_rates` measures: 8 steps, the last 5 timed, 3 rounds
TIMING = {"steps": 8, "warmup": 3, "rounds": 3}


def extra_flops(study, method: str) -> float:
    """Compute a method's runs need besides their own training, charged to it when methods are
    compared at equal FLOPs: a teacher correction (its training FLOPs), and what the method itself
    declares (offline KD's logit cache: one teacher forward per cached token, paid before the
    first step)."""
    extra = 0.0
    corrected = study.correction(method)
    if corrected is not None:
        extra += float(corrected.training["flops"])
    base = study.cfg.base_method(method)
    return extra + methods.get(base).extra_flops(study, method)


def teacher_forward_flops(study) -> float:
    """The teacher's forward FLOPs per token at the profile's block length (distill_lib.flops),
    recorded: offline KD's cache is charged with it."""
    def compute():
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from distill_lib.flops import forward_flops_per_token

        # the count reads only shapes: the architecture from the teacher's config, built on the
        # meta device, so no weights are read or allocated (a hub teacher's are gigabytes)
        config = AutoConfig.from_pretrained(str(study.teacher_dir()))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return forward_flops_per_token(model, study.cfg.data.block_length)

    return study.result("02_teacher-forward-flops", {"seq_len": study.cfg.data.block_length}, compute)


def step_rates(study) -> dict[str, list[float]]:
    """Tokens/s of TF, KD and width pruning (those in the profile), timed side by side on one
    machine (`distill_lib.timing`): what C3 and C7 read when the runs' own timings are not
    comparable. Recorded with the machine it ran on; training mode measures it (minutes, on the
    machine alone)."""
    methods = [m for m in ("tf", "kd", "width") if m in study.cfg.methods]

    def compute():
        from distill_lib.timing import step_rates as timed_side_by_side

        runs = {m: study.run_config(m, seed=0) for m in methods}
        return timed_side_by_side(runs, study.root, **TIMING, log=study.log)

    return study.result("02_step-rates", {"methods": methods, **TIMING}, compute)


def time_ratios(study, method: str, seeds: list[int] | None = None,
                in_runs: str = "tokens_per_s") -> tuple[list[float], str]:
    """Time per token of `method` over TF's, and how it was measured ("measured in the runs" or
    "timed side by side, N rounds"). Where the profile's runs were timed alike
    (`timings_comparable`): one ratio per seed of `seeds` (default: the seeds both have) from the
    runs themselves, by `in_runs`: "tokens_per_s", the median over their logged steps (what C3
    reads), or "wall_seconds", their whole wall-clock (what C7 reads; the same tokens). Both are
    kept so each claim's recorded numbers stay as they were. Elsewhere the runs' timings say
    nothing: one ratio per round of the side-by-side timing (`step_rates`), MissingRecord where
    it is not recorded, KeyError for a method it did not time."""
    if in_runs not in ("tokens_per_s", "wall_seconds"):
        raise ValueError(f"in_runs: expected 'tokens_per_s' or 'wall_seconds', got {in_runs!r}")
    if not study.cfg.timings_comparable:
        rates = study.step_rates()  # tokens/s per round: TF's over the method's
        ratios = [t / m for t, m in zip(rates["tf"], rates[method])]
        return ratios, f"timed side by side, {len(ratios)} rounds"
    from distill_lib.analysis import median_tokens_per_s as median_rate

    wall = lambda run: run.training["wall_seconds"]  # noqa: E731
    if seeds is None:  # the seeds both are trained with
        seeds = [s for s in study.seeds(method) if s in study.seeds("tf")]
    ratios = []
    for s in seeds:
        tf, run = study.student("tf", seed=s), study.student(method, seed=s)
        ratios.append(wall(run) / wall(tf) if in_runs == "wall_seconds" else median_rate(tf) / median_rate(run))
    return ratios, "measured in the runs"
