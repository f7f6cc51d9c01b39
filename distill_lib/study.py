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

`Study` keeps the records and the runs; the work behind its other names lives in modules of its own,
which it delegates to: `profiles` (profile files -> StudyConfig), `method_runs` (method -> RunConfig),
`costs` (FLOPs and timing), `evaluations` (evaluations, probes, truncation) and `outputs` (figures, tables).
"""
from __future__ import annotations

import copy
import logging
from functools import cached_property
from pathlib import Path

from distill_lib import costs, evaluations, method_runs, outputs
from distill_lib.config import (  # noqa: F401  (StudyConfig, LatencyConfig, METHODS: importable from here too)
    METHODS, ConfigError, LatencyConfig, RunConfig, StudyConfig,
)
from distill_lib.env import PROJECT_ROOT
from distill_lib.outputs import curves  # noqa: F401  (importable from here, as the notebooks do)
from distill_lib.profiles import load_study_config
from distill_lib.records import MissingRecord
from distill_lib.run_config import run_reference


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
    def missing(self, what: str, notebook: str) -> MissingRecord:
        """The error for a record that a report needs and does not find: it names the notebook that makes it."""
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
                raise self.missing(f"result {name} {inputs or ''}".strip(), name[:2])
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
                    raise self.missing(f"run {stored.dir.name}", maker(method, strategy, self.cfg).number)
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

        return self.cfg.teacher_path or run_reference(run_dir(self.teacher_run_config(), self.root).name)

    def teacher_dir(self) -> Path:
        """The teacher's weights (trained first if need be): only for computations that need them."""
        if not self.cfg.teacher_path:
            return self.teacher().model_dir
        from distill_lib.pretrained import resolve

        return Path(resolve(self.cfg.teacher_path))

    def teacher(self):
        if self.cfg.teacher_path:
            raise ConfigError("teacher_path: this profile uses a pretrained teacher; use teacher_dir()")
        run = self._get(self.teacher_run_config(), "teacher")
        if self.train and not run.has_weights:  # its students need its weights: trained again, checked
            evaluations.rebuild_run(self, run)
        return run

    @cached_property
    def teacher_model_info(self) -> dict:
        return evaluations.teacher_model_info(self)

    @cached_property
    def teacher_layers(self) -> int:
        return self.teacher_model_info["layers"]

    def seeds(self, method: str) -> list[int]:
        """The seeds the profile trains `method` (or variant) with."""
        return self.cfg.seeds_of(method)

    def method_label(self, method: str) -> str:
        """The name of the runs `student(method)` reads (here `method` itself; see `AtTunedRate`)."""
        return method

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

    def correction_run_config(self, variant: str) -> RunConfig:
        return method_runs.correction_run_config(self, variant)

    def correction(self, variant: str):
        """The recorded correction run of a KD variant (trained first in training mode), or None."""
        if not self.cfg.variants.get(variant, {}).get("teacher_correction_steps"):
            return None
        return self._get(self.correction_run_config(variant), variant)

    def corrected_teacher_ref(self, variant: str) -> str:
        from distill_lib.runs import run_dir

        if self.train:
            self.correction(variant)  # the student needs it in the run store
        return run_reference(run_dir(self.correction_run_config(variant), self.root).name)

    # --- costs and timing (distill_lib.costs) ----------------------------------------------------------
    TIMING = costs.TIMING  #: what `step_rates` measures

    def extra_flops(self, method: str) -> float:
        return costs.extra_flops(self, method)

    @cached_property
    def teacher_forward_flops(self) -> float:
        return costs.teacher_forward_flops(self)

    def step_rates(self) -> dict[str, list[float]]:
        return costs.step_rates(self)

    def time_ratios(self, method: str, seeds: list[int] | None = None,
                    in_runs: str = "tokens_per_s") -> tuple[list[float], str]:
        return costs.time_ratios(self, method, seeds, in_runs)

    # --- methods -> runs (distill_lib.method_runs) ---------------------------------------------------
    def run_config(self, method: str, strategy: str | None = None, seed: int = 0,
                   remove_every_tokens: int | None = None) -> RunConfig:
        return method_runs.run_config(self, method, strategy, seed, remove_every_tokens)

    @cached_property
    def width_target(self) -> float:
        return method_runs.width_target(self)

    def student(self, method: str, strategy: str | None = None, seed: int = 0, remove_every_tokens: int | None = None):
        return self._get(self.run_config(method, strategy, seed, remove_every_tokens), method, strategy)

    # --- evaluation, probes and truncation before training (distill_lib.evaluations) ----------------
    def truncation(self, strategy: str) -> dict:
        return evaluations.truncation(self, strategy)

    def truncated_untrained(self, strategy: str, calibration_split: str | None = None):
        return evaluations.truncated_untrained(self, strategy, calibration_split)

    def evaluate(self, run) -> dict:
        return evaluations.evaluate(self, run)

    def evaluate_model(self, name: str, inputs: dict, model_fn) -> dict:
        return evaluations.evaluate_model(self, name, inputs, model_fn)

    def headline(self, run) -> dict:
        return evaluations.headline(self, run)

    def teacher_headline(self) -> dict:
        return evaluations.teacher_headline(self)

    @cached_property
    def probe_key(self) -> str | None:
        return evaluations.probe_key(self)

    def teacher_probes(self) -> dict | None:
        return evaluations.teacher_probes(self)

    def probes(self, run, rebuild: bool = False) -> dict | None:
        return evaluations.probes(self, run, rebuild)

    def perplexity_of(self, model, split: str | None = None, max_blocks: int | None = None) -> dict:
        return evaluations.perplexity_of(self, model, split, max_blocks)

    # --- outputs: figures/<profile>/ (distill_lib.outputs) --------------------------------------------
    def save_figure(self, fig, name: str) -> None:
        outputs.save_figure(self.figures, fig, name)

    def save_table(self, df, name: str) -> None:
        outputs.save_table(self.figures, df, name)
