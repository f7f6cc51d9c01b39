"""What a study measures on models: the teacher's layers and parameter counts, the profile's
evaluation (held-out perplexity, zero-shot tasks) of a run or of a model that is not a run, the
headline scores read from it, the probes (out-of-domain perplexity and the informative suite,
`distill_lib.probes`), and a strategy's truncation before any training. Functions of a `Study`
(`distill_lib.study`), which delegates to them; each value comes from a record (a run's
evaluations, or `study.result`), else (training mode) is computed and recorded."""
from __future__ import annotations

from distill_lib.config import UNSCORED_STRATEGIES, ConfigError, InitConfig, to_dict


def teacher_model_info(study) -> dict:
    """Layers and parameter counts of the teacher."""
    if not study.cfg.teacher_path:
        return study.teacher().record["model"]

    def compute():
        from distill_lib.models import load_causal_lm, parameter_counts

        model = load_causal_lm(study.teacher_dir())
        return {"layers": model.config.num_hidden_layers, **parameter_counts(model)}

    return study.result("00_teacher-model", {}, compute)


# --- evaluation ------------------------------------------------------------------------------------
def evaluate(study, run) -> dict:
    """The profile's evaluation (held-out perplexity, zero-shot tasks) of a run's final model:
    from the run's record, else (training mode) computed and added to it."""
    from distill_lib.evaluate import evaluate_folder
    from distill_lib.records import evaluation_key

    key = evaluation_key(to_dict(study.cfg.eval), to_dict(study.cfg.data))
    found = run.record["evaluations"].get(key)
    if found is not None:
        return found
    if not (study.train or study.may_evaluate):
        raise study.missing(f"the evaluation of run {run.dir.name}", "02")
    result = evaluate_folder(run.model_dir, study.data, study.cfg.eval, study.suite_dir, log=study.log,
                             tokenizer=study.data.tokenizer)
    run.record = study.records.add_evaluation(run.dir.name, key, result)
    return run.record["evaluations"][key]


def evaluate_model(study, name: str, inputs: dict, model_fn) -> dict:
    """The profile's evaluation of a model that is not a run (the pretrained teacher, an untrained
    truncation), recorded as result `name`; `model_fn()` builds the model when it must be computed."""
    from distill_lib.evaluate import evaluate_model as evaluated

    def compute():
        return evaluated(model_fn(), study.data.tokenizer, study.data, study.cfg.eval, study.suite_dir)

    return study.result(name, {**inputs, "eval": to_dict(study.cfg.eval)}, compute)


def headline(study, run) -> dict:
    """The headline scores of a run's evaluation (`distill_lib.evaluate.headline`)."""
    from distill_lib.evaluate import headline as headline_of

    return headline_of(study.evaluate(run), study.tasks)


def teacher_headline(study) -> dict:
    """The teacher's own scores: the reference every student is read against."""
    from distill_lib.evaluate import headline as headline_of
    from distill_lib.models import load_causal_lm

    if not study.cfg.teacher_path:
        return study.headline(study.teacher())
    return headline_of(study.evaluate_model("00_teacher-evaluation", {},
                                            lambda: load_causal_lm(study.teacher_dir())), study.tasks)


def perplexity_of(study, model, split: str | None = None, max_blocks: int | None = None) -> dict:
    """Perplexity on the evaluation split and window (default), or on `split`'s first `max_blocks`
    blocks (e.g. the validation blocks that the training loop's curves use)."""
    from distill_lib.evaluate import perplexity

    return perplexity(model, study.data.tokenizer, study.data.tokens[split or study.cfg.eval.ppl_split],
                      study.cfg.data.block_length, batch_size=study.cfg.eval.batch_size,
                      max_blocks=max_blocks or study.cfg.eval.ppl_max_blocks)


# --- probes: out-of-domain perplexity and the informative suite (distill_lib.probes) -------------
def probe_key(study) -> str | None:
    """The evaluation key of the profile's probes in a run's record (None: the profile sets none)."""
    from distill_lib.probes import probe_key_inputs
    from distill_lib.records import evaluation_key

    return None if study.cfg.probes is None else evaluation_key(probe_key_inputs(study.cfg.probes),
                                                                to_dict(study.cfg.data))


def _run_probes(study, model) -> dict:
    from distill_lib.probes import run_probes

    return run_probes(model, study.data.tokenizer, study.data.documents["test"], study.cfg.probes,
                      study.cfg.data.block_length, study.cfg.eval.max_length, study.cfg.eval.batch_size)


def teacher_probes(study) -> dict | None:
    """The teacher's probes, the reference every student's are read against (None: no probes)."""
    from distill_lib.probes import probe_key_inputs

    if study.cfg.probes is None:
        return None
    if not study.cfg.teacher_path:
        return study.probes(study.teacher())

    def compute():
        from distill_lib.models import load_causal_lm

        return _run_probes(study, load_causal_lm(study.teacher_dir()))

    return study.result("00_teacher-probes", probe_key_inputs(study.cfg.probes), compute)


def probes(study, run, rebuild: bool = False) -> dict | None:
    """A run's probes: from its record; else, in training mode with the run's weights in the run
    store, computed and added to the record; else None (a run recorded before the probes, or
    whose weights are elsewhere: the tables show it as not measured). `rebuild` first retrains a
    recorded run whose weights are not here (weights are a cache) and requires the rebuilt
    run's final validation loss to equal the record's, so that the probes describe that model."""
    from distill_lib.models import load_causal_lm

    if study.probe_key is None:
        return None
    found = run.record["evaluations"].get(study.probe_key)
    if found is None and study.train and rebuild and not run.has_weights:
        rebuild_run(study, run)
    if found is not None or not study.train or not run.has_weights:
        return found
    reference = study.teacher_probes()["ood"] if run.config.name != "teacher" else None
    result = _run_probes(study, load_causal_lm(run.model_dir))
    if reference is not None and reference["sha256"] != result["ood"]["sha256"]:
        raise ConfigError(f"probes: the out-of-domain text here (Python {result['ood']['python']}, "
                          f"{result['ood']['sha256']}) is not the one the teacher was measured on (Python "
                          f"{reference['python']}, {reference['sha256']}); measure on a machine with that text")
    run.record = study.records.add_evaluation(run.dir.name, study.probe_key, result)
    if study.log:
        study.log(f"probes {run.dir.name}: out-of-domain ppl {result['ood']['ppl']:.2f} in {result['seconds']:.0f} s")
    return result


def rebuild_run(study, run) -> None:
    """Train a recorded run whose weights are not here again into the run store (weights are a
    cache); its final validation loss must equal the record's, or it is another model."""
    from distill_lib.runs import get_or_train

    recorded = run.record["summary"]["final"]["val_loss"]
    rebuilt = get_or_train(run.config, root=study.root, log=study.log).training["final"]["val_loss"]
    if abs(rebuilt - recorded) > 1e-4 * abs(recorded):
        raise ConfigError(f"rebuild: run {run.dir.name} rebuilt to final validation loss {rebuilt:.6f}, its record "
                          f"says {recorded:.6f}; the code or machine trains it differently, so what is measured on "
                          "it or trained from it would concern another model (the rebuilt weights stay in the run store; "
                          "records made before commit df71c57 need their own code: bench/rebuild_teacher_at_commit.sh)")
    if study.log:
        study.log(f"run {run.dir.name}: rebuilt, final validation loss {rebuilt:.6f} as recorded")


# --- truncation, before any training -------------------------------------------------------------
def truncation(study, strategy: str) -> dict:
    """Which layers a strategy keeps and how the model does right after truncation, before any
    training (recorded by notebook 01 as `01_truncation`, read by 01 and 08)."""
    def compute():
        model, keep = study.truncated_untrained(strategy)
        return {"kept": [int(i) for i in keep],
                "ppl_after_truncation": study.perplexity_of(model)["ppl"],
                # the first point of the recovery curve: the loop's own validation blocks
                "val_ppl_at_step_0": study.perplexity_of(model, split="validation",
                                                         max_blocks=study.cfg.student_train.eval_blocks)["ppl"]}

    inputs = {"strategy": strategy, "drop": study.cfg.drop}
    if study.cfg.calibration_split and strategy not in UNSCORED_STRATEGIES:  # keyed only when set: old keys stay
        inputs["calibration_split"] = study.cfg.calibration_split
    return study.result("01_truncation", inputs, compute)


def teacher_layer_scores(study, calibration_blocks: int = 16) -> dict:
    """The teacher's layers scored before anything is removed (notebook 01, recorded as
    `01_importance`): the block influence of each layer (1 - cos of its input and output) and the
    angular distance across each block of `drop` layers, on the validation split's first blocks.
    Whether a score tells which layers matter is read against the perplexity right after truncation."""
    def compute():
        import numpy as np
        import torch

        from distill_lib.models import load_causal_lm
        from distill_lib.truncate import layer_importance

        teacher = load_causal_lm(study.teacher_dir())
        calib = torch.from_numpy(study.data.blocks("validation")[:calibration_blocks].astype(np.int64))
        return {"block-influence": [float(v) for v in layer_importance(teacher, calib, "block-influence")],
                "angular": [float(v) for v in layer_importance(teacher, calib, "angular", study.cfg.drop)]}

    return study.result("01_importance", {"drop": study.cfg.drop, "calibration_blocks": calibration_blocks}, compute)


def selection(study, strategy: str) -> dict:
    """A layer selector's choice (notebook 08, recorded as `08_selection`): the layers it keeps, its
    per-layer scores and the test perplexity right after truncation, on the profile's calibration
    split."""
    def compute():
        from distill_lib.truncate import layer_selection

        model, keep = study.truncated_untrained(strategy)
        record = layer_selection(model) or {}
        return {"kept": [int(i) for i in keep], "scores": record.get("scores"),
                "ppl_after_truncation": study.perplexity_of(model)["ppl"]}

    calibration = {"calibration_split": study.cfg.calibration_split} if study.cfg.calibration_split else {}
    return study.result("08_selection", {"strategy": strategy, "drop": study.cfg.drop, **calibration}, compute)


def latency(study, student) -> dict:
    """Generation and forward speed of the teacher and the truncated `student` (a TF run), same
    device, threads and settings (`latency` of the profile; notebook 06, recorded as `06_latency`
    with the machine it ran on). Without the student's weights its architecture right after
    truncation is timed: generating exactly N tokens is the same work whatever the weights."""
    cfg = study.cfg.latency

    def compute():
        import numpy as np
        import torch

        from distill_lib.evaluate import latency as timed
        from distill_lib.models import load_causal_lm
        from distill_lib.records import MissingRecord
        from distill_lib.runs import environment_record

        prompts = torch.from_numpy(study.data.blocks("test")[: cfg.batch, : cfg.prompt_length].astype(np.int64))
        try:
            trained, weights = student.load_model(), "trained"
        except MissingRecord:  # weights are a cache: the same architecture does the same work (exactly N tokens)
            trained, weights = study.truncated_untrained(study.cfg.strategy)[0], "truncated, untrained"
        models = {"teacher": load_causal_lm(study.teacher_dir()), "student": trained}
        return {name: {**timed(m, prompts, new_tokens=cfg.new_tokens, repeats=cfg.repeats),
                       "layers": m.config.num_hidden_layers} for name, m in models.items()} | {
            "hardware": environment_record()["hardware"], "student_weights": weights}

    return study.result("06_latency", {"latency": cfg.__dict__, "student": student.dir.name}, compute)


def truncated_untrained(study, strategy: str, calibration_split: str | None = None):
    """The truncated model before any training (for 'perplexity right after truncation'), chosen
    exactly as a run's `init` chooses it: a scored strategy calibrates on `calibration_split`
    (default: the profile's; None = validation, as every run before the field). Needs the
    teacher's weights."""
    import numpy as np
    import torch

    from distill_lib.env import LAYER_SCORES_CACHE
    from distill_lib.models import load_causal_lm
    from distill_lib.truncate import truncate_by_strategy

    blocks = InitConfig().calibration_blocks
    split = calibration_split or study.cfg.calibration_split or "validation"
    ids = torch.from_numpy(study.data.blocks(split)[:blocks].astype(np.int64))
    return truncate_by_strategy(load_causal_lm(study.teacher_dir()), strategy, drop=study.cfg.drop,
                                calibration_ids=ids, scores_cache=LAYER_SCORES_CACHE)
