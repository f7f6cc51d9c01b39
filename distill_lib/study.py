"""The study's runs, named: what each notebook asks for. A notebook calls e.g.
`study = Study.load("mini")`, `study.teacher()`, `study.student("tf", seed=1)`, `study.evaluate(run)`;
every run goes through the run store, so re-executing a notebook reuses finished work.

Methods (all students start from the teacher unless said otherwise, and train for the same
number of tokens, `student_train.max_steps` x batch x block length):
  tf            truncate (strategy), continue pretraining with the LM loss — the paper's method
  kd            truncate, vanilla KD (teacher in memory)
  offline-kd    truncate, KD from stored top-k teacher logits
  chop-distill  truncate, LM + KL + hidden/attention/embedding MSE (v3 Fig 4)
  random        the truncated architecture with random weights, LM loss (C1)
  scratch       half-depth model from scratch with the teacher's width, LM loss (v3 Fig 2; C6)
  gradual       the whole teacher, layers removed one at a time every K tokens (v3 Fig 6; C5)
  width         the whole teacher, FFN units pruned during training (DimCHOP) to the depth-pruned
                student's parameter count, then removed (v3 Fig 3; C7)
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from functools import cached_property
from pathlib import Path

from distill_lib.config import (  # noqa: F401  (StudyConfig, LatencyConfig, METHODS: importable from here too)
    METHODS, UNSCORED_STRATEGIES, ConfigError, HealingConfig, InitConfig, LatencyConfig, RunConfig, StudyConfig, TrainConfig, WidthConfig,
    from_dict, load_yaml, resolve_profile_paths, to_dict,
)
from distill_lib.env import PROJECT_ROOT
from distill_lib.records import MissingRecord

_OBJECTIVE = {"tf": "lm", "kd": "kd", "offline-kd": "offline-kd", "chop-distill": "chop-distill",
              "random": "lm", "scratch": "lm", "gradual": "lm", "width": "lm"}


def _profile_path(profile: str | Path) -> Path:
    path = Path(profile)
    if not path.suffix:
        path = PROJECT_ROOT / "params" / f"{profile}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in (PROJECT_ROOT / "params").glob("*.yaml"))
        raise ConfigError(f"profile: {str(profile)!r} not found (available: {', '.join(available)})")
    return path


def _merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`, mappings merged key by key (so `student_train: {lr: ...}`
    changes only the learning rate)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _raw_profile(profile: str | Path, seen: tuple = ()) -> dict:
    """The profile's YAML, with `base: <profile>` resolved (the named profile's keys, then this one's)."""
    path = _profile_path(profile)
    if path in seen:
        raise ConfigError(f"base: profiles {' -> '.join(p.stem for p in (*seen, path))} form a cycle")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"profile: {path} must hold a mapping of keys, got {type(data).__name__}")
    data = resolve_profile_paths(data, path.parent)  # paths in a profile are relative to its file
    base = data.pop("base", None)
    if base and "name" not in data:
        raise ConfigError(f"name: profile {path.stem} builds on {base!r} and needs its own name "
                          f"(its runs, figures and reports are kept under that name)")
    return _merge(_raw_profile(base, (*seen, path)), data) if base else data


def _scaled(train: TrainConfig, scale: int | float) -> TrainConfig:
    """`train` with its budget (steps, warm-up, evaluation and checkpoint intervals) times `scale`."""
    if scale == 1:
        return train
    times = lambda n: max(1, round(n * scale)) if n else n  # noqa: E731
    return dataclasses.replace(train, max_steps=times(train.max_steps), warmup_steps=times(train.warmup_steps),
                               eval_every=times(train.eval_every), checkpoint_every=times(train.checkpoint_every))


def load_study_config(profile: str | Path) -> StudyConfig:
    cfg = from_dict(StudyConfig, _raw_profile(profile))
    if cfg.scale == 1:
        return cfg
    return dataclasses.replace(
        cfg, teacher_train=_scaled(cfg.teacher_train, cfg.scale), student_train=_scaled(cfg.student_train, cfg.scale),
        scratch_train=cfg.scratch_train and _scaled(cfg.scratch_train, cfg.scale),
        gradual_every_tokens=[k * cfg.scale for k in cfg.gradual_every_tokens])


class Study:
    """The study of one profile. With `train=True` (the default, `make study`) a run that is not
    recorded is trained (or reused from the run store) and recorded; with `train=False`
    (`make report`) everything comes from the committed records and nothing is trained or
    computed: a missing record is an error that names the notebook that makes it."""

    def __init__(self, cfg: StudyConfig, root: Path | None = None, log=logging.getLogger("distill_lib.study").info,
                 train: bool = True, records: Path | None = None):
        from distill_lib.records import RECORDS_ROOT, RecordStore

        self.cfg = cfg
        self.root = Path(root or PROJECT_ROOT / "runs" / cfg.name)
        # a study in its own run store (tests, experiments) keeps its records there too
        self.records = RecordStore(records or (RECORDS_ROOT / cfg.name if root is None else self.root / "_records"))
        self.figures = PROJECT_ROOT / "figures" / cfg.name
        self.log = log
        self.train = train
        self.may_evaluate = False  # see read_only

    @classmethod
    def load(cls, profile: str | Path, **kw) -> "Study":
        return cls(load_study_config(profile), **kw)

    def read_only(self) -> "Study":
        """This study without training (what the claims use: a report never trains). A complete run
        of the run store is still recorded, and in training mode a missing evaluation of a finished
        run is still computed (minutes, not a training run)."""
        if not self.train:
            return self
        view = copy.copy(self)
        view.train, view.may_evaluate = False, True
        return view

    # --- data and evaluation set-up ---------------------------------------------------------------
    @cached_property
    def data(self):
        from distill_lib.data import prepare_data

        return prepare_data(self.cfg.data, log=self.log)

    @cached_property
    def suite_dir(self) -> Path:
        from distill_lib.tasks import build_offline_suite

        return build_offline_suite(self.data.documents["test"], self.root / "_suite", self.cfg.eval.suite,
                                   tokenizer=self.data.tokenizer, max_length=self.cfg.eval.max_length)

    @cached_property
    def tasks(self) -> dict[str, str]:
        """Task -> reported metric. Named task sets need no data (a report reads them from records);
        a single lm-eval task name is checked against the registry with the offline suite in it."""
        from distill_lib.evaluate import resolve_tasks
        from distill_lib.tasks import TASK_SETS

        names = self.cfg.eval.task_sets
        return resolve_tasks(names, None if all(n in TASK_SETS for n in names) else self.suite_dir)

    # --- records ----------------------------------------------------------------------------------
    def _missing(self, what: str, notebook: str) -> MissingRecord:
        from distill_lib.catalog import by_number

        return MissingRecord(what=what, message=
            f"record: {what} is not in {self.records.root.relative_to(self.records.root.parent.parent)}; "
            f"notebook {by_number(notebook).stem} makes it: "
            f"`python -m distill_lib study --profile {self.cfg.name} --only {notebook}` (or `make study PROFILE={self.cfg.name}`)")

    def result(self, name: str, inputs: dict, compute):
        """The value of a computation on models (not a training run), e.g. `result("01_importance",
        {...}, lambda: ...)`: read from its record, else (training mode only) computed and recorded.
        The key is the name, the inputs, the teacher and the data; the name starts with the number
        of the notebook that computes it. The value is returned as the record holds it (plain JSON
        data), so a report from records shows exactly what the run that computed it showed."""
        from distill_lib.config import to_dict
        from distill_lib.data import content_hash
        from distill_lib.records import RECORD_VERSION

        key = content_hash(name, inputs, self.teacher_ref, to_dict(self.cfg.data), RECORD_VERSION)
        record = self.records.result(name, key)
        if record is None:
            if not self.train:
                raise self._missing(f"result {name} {inputs or ''}".strip(), name[:2])
            from distill_lib.runs import environment_record

            record = self.records.save_result(name, key, inputs, compute(), environment_record())
        return record["value"]

    # --- runs ----------------------------------------------------------------------------------------
    def _get(self, run: RunConfig, method: str, strategy: str | None = None):
        """The recorded run for `run` (of `method`): from its record; else recorded from a complete
        run of the run store; else (training mode only) trained, then recorded."""
        from distill_lib.catalog import maker
        from distill_lib.runs import RecordedRun, Run, get_or_train, run_dir

        stored = Run(run, run_dir(run, self.root))
        record = self.records.run(stored.dir.name)
        if record is None:
            if not stored.complete:
                if not self.train:
                    raise self._missing(f"run {stored.dir.name}", maker(method, strategy, self.cfg).number)
                get_or_train(run, root=self.root, log=self.log)
            elif self.log:
                self.log(f"run {stored.dir.name}: complete in the run store, recorded")
            record = self.records.save_run(stored)
        return RecordedRun(run, stored.dir, record)

    def teacher_run_config(self) -> RunConfig:
        return RunConfig(name="teacher", data=self.cfg.data, model=self.cfg.teacher_model, train=self.cfg.teacher_train)

    @cached_property
    def teacher_ref(self) -> str:
        """The teacher's identity in every config and record: the profile's `teacher_path` (a name),
        or `run:<folder>` for the teacher trained here (a name in the run store, never a path)."""
        from distill_lib.runs import run_dir

        return self.cfg.teacher_path or f"run:{run_dir(self.teacher_run_config(), self.root).name}"

    def teacher_dir(self) -> Path:
        """The teacher's weights (trained first if need be): only for computations that need them."""
        if not self.cfg.teacher_path:
            return self.teacher().model_dir
        from distill_lib.pretrained import resolve

        return Path(resolve(self.cfg.teacher_path))

    def teacher(self):
        if self.cfg.teacher_path:
            raise ConfigError("teacher_path: this profile uses a pretrained teacher; use teacher_dir()")
        return self._get(self.teacher_run_config(), "teacher")

    @cached_property
    def teacher_model_info(self) -> dict:
        """Layers and parameter counts of the teacher."""
        if not self.cfg.teacher_path:
            return self.teacher().record["model"]

        def compute():
            from distill_lib.models import load_causal_lm, parameter_counts

            model = load_causal_lm(self.teacher_dir())
            return {"layers": model.config.num_hidden_layers, **parameter_counts(model)}

        return self.result("00_teacher-model", {}, compute)

    @cached_property
    def teacher_layers(self) -> int:
        return self.teacher_model_info["layers"]

    def seeds(self, method: str) -> list[int]:
        """The seeds the profile trains `method` (or variant) with."""
        return self.cfg.seeds_of(method)

    def correction_run_config(self, variant: str) -> RunConfig:
        """The teacher's correction for a KD variant: the whole teacher continued with the LM loss on
        the training split for `teacher_correction_steps` (student_train's batch and learning rate)."""
        steps = self.cfg.variants[variant]["teacher_correction_steps"]
        train = dataclasses.replace(self.cfg.student_train, objective="lm", seed=0, max_steps=steps,
                                    warmup_steps=min(self.cfg.student_train.warmup_steps, steps),
                                    eval_every=0, checkpoint_every=steps)
        return RunConfig(name=f"teacher-corrected{steps}", data=self.cfg.data, init=InitConfig(kind="pretrained"),
                         teacher=self.teacher_ref, train=train)

    def correction(self, variant: str):
        """The recorded correction run of a KD variant (trained first in training mode), or None."""
        if not self.cfg.variants.get(variant, {}).get("teacher_correction_steps"):
            return None
        return self._get(self.correction_run_config(variant), variant)

    def corrected_teacher_ref(self, variant: str) -> str:
        from distill_lib.runs import run_dir

        if self.train:
            self.correction(variant)  # the student needs it in the run store
        return f"run:{run_dir(self.correction_run_config(variant), self.root).name}"

    def extra_flops(self, method: str) -> float:
        """Compute a method's runs need besides their own training, charged to it when methods are
        compared at equal FLOPs: a teacher correction (its training FLOPs), and offline KD's logit
        cache (one teacher forward per cached token, paid before the first step: the forward online
        KD pays inside its steps)."""
        extra = 0.0
        corrected = self.correction(method)
        if corrected is not None:
            extra += float(corrected.summary["summary"]["flops"])
        if self.cfg.variants.get(method, {"method": method})["method"] == "offline-kd":
            run = self.student(method, seed=self.seeds(method)[0])
            cache = run.summary["summary"].get("teacher_cache")
            # records from before the cache was described: it holds the blocks the run trained on
            tokens = cache["blocks"] * self.cfg.data.block_length if cache else run.summary["summary"]["tokens"]
            extra += self.teacher_forward_flops * tokens
        return extra

    @cached_property
    def teacher_forward_flops(self) -> float:
        """The teacher's forward FLOPs per token at the profile's block length (distill_lib.flops),
        recorded: offline KD's cache is charged with it."""
        def compute():
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            from distill_lib.flops import forward_flops_per_token

            # the count reads only shapes: the architecture from the teacher's config, built on the
            # meta device, so no weights are read or allocated (a hub teacher's are gigabytes)
            config = AutoConfig.from_pretrained(str(self.teacher_dir()))
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config)
            return forward_flops_per_token(model, self.cfg.data.block_length)

        return self.result("02_teacher-forward-flops", {"seq_len": self.cfg.data.block_length}, compute)

    #: what `step_rates` measures: 8 steps, the last 5 timed, 3 rounds
    TIMING = {"steps": 8, "warmup": 3, "rounds": 3}

    def step_rates(self) -> dict[str, list[float]]:
        """Tokens/s of TF, KD and width pruning (those in the profile), timed side by side on one
        machine (`distill_lib.timing`): what C3 and C7 read when the runs' own timings are not
        comparable. Recorded with the machine it ran on; training mode measures it (minutes, on the
        machine alone)."""
        methods = [m for m in ("tf", "kd", "width") if m in self.cfg.methods]

        def compute():
            from distill_lib.timing import step_rates

            runs = {m: self.run_config(m, seed=0) for m in methods}
            return step_rates(runs, self.root, **self.TIMING, log=self.log)

        return self.result("02_step-rates", {"methods": methods, **self.TIMING}, compute)

    def time_ratios(self, method: str, seeds: list[int] | None = None,
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
        if not self.cfg.timings_comparable:
            rates = self.step_rates()  # tokens/s per round: TF's over the method's
            ratios = [t / m for t, m in zip(rates["tf"], rates[method])]
            return ratios, f"timed side by side, {len(ratios)} rounds"
        import numpy as np

        median_rate = lambda run: float(np.median([m["tokens_per_s"] for m in run.metrics()]))  # noqa: E731
        wall = lambda run: run.summary["summary"]["wall_seconds"]  # noqa: E731
        if seeds is None:  # the seeds both are trained with
            seeds = [s for s in self.seeds(method) if s in self.seeds("tf")]
        ratios = []
        for s in seeds:
            tf, run = self.student("tf", seed=s), self.student(method, seed=s)
            ratios.append(wall(run) / wall(tf) if in_runs == "wall_seconds" else median_rate(tf) / median_rate(run))
        return ratios, "measured in the runs"

    def selector_seeds(self) -> list[int]:
        """The seeds notebook 08 heals each selector's student with (H1)."""
        return list(self.cfg.selector_seeds or self.config_seeds()[:1])

    def selection_reference_configs(self) -> list[str]:
        """The paper's configurations notebook 08 heals next to the selectors, as references:
        `selection_reference`, or all of `configs` when it is not set ([] = none), less any that
        is also a selector (healed once, as a selector)."""
        reference = self.cfg.configs if self.cfg.selection_reference is None else self.cfg.selection_reference
        return [c for c in reference if c not in self.cfg.selectors]

    def config_seeds(self) -> list[int]:
        """The seeds notebook 01 trains its five configurations with (C4)."""
        return list(self.cfg.config_seeds or self.cfg.seeds)

    def run_config(self, method: str, strategy: str | None = None, seed: int = 0,
                   every_tokens: int | None = None) -> RunConfig:
        cfg = self.cfg
        if method not in METHODS and method not in cfg.variants:
            raise ConfigError(f"method: unknown {method!r} (valid: {', '.join(METHODS)} or a name in variants)")
        if method not in cfg.methods:
            raise ConfigError(f"method: {method!r} is not in profile {cfg.name}'s methods "
                              f"({', '.join(cfg.methods)}); add it to params/{cfg.name}.yaml")
        strategy = strategy or cfg.strategy
        name = f"{method}-{strategy}-s{seed}"
        variant_name = method
        # from scratch has its own base settings, if the profile sets them (its variants build on them)
        scratch = cfg.variants.get(method, {"method": method})["method"] == "scratch"
        student_train = (cfg.scratch_train or cfg.student_train) if scratch else cfg.student_train
        teacher = healing = None
        calibration = cfg.calibration_split
        if method in cfg.variants:
            variant = cfg.variants[method]
            calibration = variant.get("calibration_split", calibration)
            student_train = from_dict(TrainConfig, {**to_dict(student_train), **(variant.get("train") or {})})
            student_train = _scaled(student_train, cfg.budget_of(method))
            if variant.get("teacher_correction_steps"):
                teacher = self.corrected_teacher_ref(method)
            if variant.get("healing") is not None:
                healing = from_dict(HealingConfig, variant["healing"])
            method = variant["method"]
        train = dataclasses.replace(student_train, objective=_OBJECTIVE[method], seed=seed)
        if method == "scratch":  # a variant of it (e.g. a longer budget) is named after the variant
            from distill_lib.truncate import drop_count

            n = self.teacher_layers
            model = dataclasses.replace(cfg.teacher_model, n_layers=n - drop_count(n, cfg.drop))
            return RunConfig(name=f"{variant_name}-s{seed}", data=cfg.data, model=model, train=train)
        if self.train and not cfg.teacher_path:
            self.teacher()  # a student of the teacher trained here needs it in the run store
        # a named or hub teacher stays a name; the study's own one is a sibling run in the store,
        # named, not a machine path, so the config hash is the same in every checkout
        teacher = teacher or self.teacher_ref
        if method == "gradual":
            from distill_lib.truncate import select_layers

            n = self.teacher_layers
            keep = select_layers(strategy, n, drop=cfg.drop)
            removed = [i for i in range(n) if i not in keep]
            train = dataclasses.replace(train, remove_every_tokens=every_tokens, removal_order=removed)
            return RunConfig(name=f"gradual{every_tokens}-{strategy}-s{seed}", data=cfg.data,
                             init=InitConfig(kind="pretrained"), teacher=teacher, train=train)
        if method == "width":
            return RunConfig(name=f"width-s{seed}", data=cfg.data, init=InitConfig(kind="pretrained"), teacher=teacher,
                             train=train, width=WidthConfig(target=self.width_target))
        kind = "random-truncated" if method == "random" else "truncate"
        # only a scored strategy reads calibration blocks; the others keep the hash they had
        scored = strategy not in UNSCORED_STRATEGIES
        init = InitConfig(kind=kind, strategy=strategy, drop=cfg.drop, calibration_split=calibration if scored else None)
        return RunConfig(name=name, data=cfg.data, init=init,
                         teacher=teacher, train=train, **({"healing": healing} if healing else {}))

    @cached_property
    def width_target(self) -> float:
        """Fraction of FFN units to prune so the width-pruned model has the depth-pruned student's
        non-embedding parameter count (rounded, so the run's config hash is stable). Loads and
        truncates the teacher, so it is recorded."""

        def compute():
            from distill_lib.models import compare_parameters, load_causal_lm
            from distill_lib.width import matching_ffn_fraction

            teacher = load_causal_lm(self.teacher_dir())
            depth, _ = self.truncated_untrained(self.cfg.strategy)
            keep = compare_parameters(teacher, depth)["kept_fraction_non_embedding"]
            return round(matching_ffn_fraction(teacher, keep), 4)

        return self.result("07_width-target", {"strategy": self.cfg.strategy, "drop": self.cfg.drop}, compute)

    def student(self, method: str, strategy: str | None = None, seed: int = 0, every_tokens: int | None = None):
        return self._get(self.run_config(method, strategy, seed, every_tokens), method, strategy)

    def truncation(self, strategy: str) -> dict:
        """Which layers a strategy keeps and how the model does right after truncation, before any
        training (recorded by notebook 01 as `01_truncation`, read by 01 and 08)."""
        def compute():
            model, keep = self.truncated_untrained(strategy)
            return {"kept": [int(i) for i in keep],
                    "ppl_after_truncation": self.perplexity_of(model)["ppl"],
                    # the first point of the recovery curve: the loop's own validation blocks
                    "val_ppl_at_step_0": self.perplexity_of(model, split="validation",
                                                            max_blocks=self.cfg.student_train.eval_blocks)["ppl"]}

        inputs = {"strategy": strategy, "drop": self.cfg.drop}
        if self.cfg.calibration_split and strategy not in UNSCORED_STRATEGIES:  # keyed only when set: old keys stay
            inputs["calibration_split"] = self.cfg.calibration_split
        return self.result("01_truncation", inputs, compute)

    def truncated_untrained(self, strategy: str, calibration_split: str | None = None):
        """The truncated model before any training (for 'perplexity right after truncation'), chosen
        exactly as a run's `init` chooses it: a scored strategy calibrates on `calibration_split`
        (default: the profile's; None = validation, as every run before the field). Needs the
        teacher's weights."""
        import numpy as np
        import torch

        from distill_lib.models import load_causal_lm
        from distill_lib.env import LAYER_SCORES_CACHE
        from distill_lib.truncate import truncate_by_strategy

        blocks = InitConfig().calibration_blocks
        split = calibration_split or self.cfg.calibration_split or "validation"
        ids = torch.from_numpy(self.data.blocks(split)[:blocks].astype(np.int64))
        return truncate_by_strategy(load_causal_lm(self.teacher_dir()), strategy, drop=self.cfg.drop,
                                    calibration_ids=ids, scores_cache=LAYER_SCORES_CACHE)

    # --- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, run) -> dict:
        """The profile's evaluation (held-out perplexity, zero-shot tasks) of a run's final model:
        from the run's record, else (training mode) computed and added to it."""
        from distill_lib.config import to_dict
        from distill_lib.evaluate import evaluate_folder
        from distill_lib.records import evaluation_key

        key = evaluation_key(to_dict(self.cfg.eval), to_dict(self.cfg.data))
        found = run.record["evaluations"].get(key)
        if found is not None:
            return found
        if not (self.train or self.may_evaluate):
            raise self._missing(f"the evaluation of run {run.dir.name}", "02")
        result = evaluate_folder(run.model_dir, self.data, self.cfg.eval, self.suite_dir, log=self.log,
                                 tokenizer=self.data.tokenizer)
        run.record = self.records.add_evaluation(run.dir.name, key, result)
        return run.record["evaluations"][key]

    def evaluate_model(self, name: str, inputs: dict, model_fn) -> dict:
        """The profile's evaluation of a model that is not a run (the pretrained teacher, an untrained
        truncation), recorded as result `name`; `model_fn()` builds the model when it must be computed."""
        from distill_lib.config import to_dict
        from distill_lib.evaluate import evaluate_model

        def compute():
            return evaluate_model(model_fn(), self.data.tokenizer, self.data, self.cfg.eval, self.suite_dir)

        return self.result(name, {**inputs, "eval": to_dict(self.cfg.eval)}, compute)

    def headline(self, run) -> dict:
        from distill_lib.evaluate import headline

        return headline(self.evaluate(run), self.tasks)

    def teacher_headline(self) -> dict:
        """The teacher's own scores: the reference every student is read against."""
        from distill_lib.evaluate import headline
        from distill_lib.models import load_causal_lm

        if not self.cfg.teacher_path:
            return self.headline(self.teacher())
        return headline(self.evaluate_model("00_teacher-evaluation", {},
                                            lambda: load_causal_lm(self.teacher_dir())), self.tasks)

    # --- probes: out-of-domain perplexity and the informative suite (distill_lib.probes) -------------
    @cached_property
    def probe_key(self) -> str | None:
        """The evaluation key of the profile's probes in a run's record (None: the profile sets none)."""
        from distill_lib.config import to_dict
        from distill_lib.probes import probe_key_inputs
        from distill_lib.records import evaluation_key

        return None if self.cfg.probes is None else evaluation_key(probe_key_inputs(self.cfg.probes),
                                                                   to_dict(self.cfg.data))

    def _run_probes(self, model) -> dict:
        from distill_lib.probes import run_probes

        return run_probes(model, self.data.tokenizer, self.data.documents["test"], self.cfg.probes,
                          self.cfg.data.block_length, self.cfg.eval.max_length, self.cfg.eval.batch_size)

    def teacher_probes(self) -> dict | None:
        """The teacher's probes, the reference every student's are read against (None: no probes)."""
        from distill_lib.probes import probe_key_inputs

        if self.cfg.probes is None:
            return None
        if not self.cfg.teacher_path:
            return self.probes(self.teacher())

        def compute():
            from distill_lib.models import load_causal_lm

            return self._run_probes(load_causal_lm(self.teacher_dir()))

        return self.result("00_teacher-probes", probe_key_inputs(self.cfg.probes), compute)

    def probes(self, run, rebuild: bool = False) -> dict | None:
        """A run's probes: from its record; else, in training mode with the run's weights in the run
        store, computed and added to the record; else None (a run recorded before the probes, or
        whose weights are elsewhere: the tables show it as not measured). `rebuild` first retrains a
        recorded run whose weights are not here (weights are a cache) and requires the rebuilt
        run's final validation loss to equal the record's, so that the probes describe that model."""
        from distill_lib.models import load_causal_lm

        if self.probe_key is None:
            return None
        found = run.record["evaluations"].get(self.probe_key)
        if found is None and self.train and rebuild and not run.has_weights:
            self._rebuild(run)
        if found is not None or not self.train or not run.has_weights:
            return found
        reference = self.teacher_probes()["ood"] if run.config.name != "teacher" else None
        result = self._run_probes(load_causal_lm(run.model_dir))
        if reference is not None and reference["sha256"] != result["ood"]["sha256"]:
            raise ConfigError(f"probes: the out-of-domain text here (Python {result['ood']['python']}, "
                              f"{result['ood']['sha256']}) is not the one the teacher was measured on (Python "
                              f"{reference['python']}, {reference['sha256']}); measure on a machine with that text")
        run.record = self.records.add_evaluation(run.dir.name, self.probe_key, result)
        if self.log:
            self.log(f"probes {run.dir.name}: out-of-domain ppl {result['ood']['ppl']:.2f} in {result['seconds']:.0f} s")
        return result

    def _rebuild(self, run) -> None:
        """Train a recorded run again into the run store; its final validation loss must equal the record's."""
        from distill_lib.runs import get_or_train

        recorded = run.record["summary"]["final"]["val_loss"]
        rebuilt = get_or_train(run.config, root=self.root, log=self.log).summary["summary"]["final"]["val_loss"]
        if abs(rebuilt - recorded) > 1e-4 * abs(recorded):
            raise ConfigError(f"probes: run {run.dir.name} rebuilt to final validation loss {rebuilt:.6f}, its record "
                              f"says {recorded:.6f}; the code or machine trains it differently, so its probes would "
                              "describe another model (the rebuilt weights stay in the run store)")
        if self.log:
            self.log(f"run {run.dir.name}: rebuilt, final validation loss {rebuilt:.6f} as recorded")

    def perplexity_of(self, model, split: str | None = None, max_blocks: int | None = None) -> dict:
        """Perplexity on the evaluation split and window (default), or on `split`'s first `max_blocks`
        blocks (e.g. the validation blocks that the training loop's curves use)."""
        from distill_lib.evaluate import perplexity

        return perplexity(model, self.data.tokenizer, self.data.tokens[split or self.cfg.eval.ppl_split],
                          self.cfg.data.block_length, batch_size=self.cfg.eval.batch_size,
                          max_blocks=max_blocks or self.cfg.eval.ppl_max_blocks)

    # --- outputs ---------------------------------------------------------------------------------------
    def save_figure(self, fig, name: str) -> None:
        """figures/<profile>/<name>.png and .pdf (returns nothing: a notebook cell that ends with it
        shows the figure, not a path of this machine)."""
        self.figures.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):
            fig.savefig(self.figures / f"{name}.{ext}", bbox_inches="tight", dpi=130,
                        metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})

    def save_table(self, df, name: str) -> None:
        """figures/<profile>/<name>.csv (full precision) and .md (rounded, for reading)."""
        self.figures.mkdir(parents=True, exist_ok=True)
        df.to_csv(self.figures / f"{name}.csv", index=False)
        (self.figures / f"{name}.md").write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")


def curves(runs: dict) -> "pd.DataFrame":
    """Validation curves: `runs` maps a label (e.g. a method) to one run or a list of runs (its
    seeds). DataFrame(method, seed, run, step, tokens, flops, wall_seconds, val_loss, val_ppl)."""
    import pandas as pd

    rows = []
    for label, group in runs.items():
        for run in group if isinstance(group, (list, tuple)) else [group]:
            for m in run.metrics():
                if "val_loss" in m:
                    rows.append({"method": label, "seed": run.config.train.seed, "run": run.config.name,
                                 "step": m["step"], "tokens": m["tokens"], "flops": m["flops"],
                                 "wall_seconds": m["wall_seconds"], "val_loss": m["val_loss"],
                                 "val_ppl": m["val_ppl"]})
    return pd.DataFrame(rows)
