"""`plan`: what a profile will do, from its config alone and offline (no download, no training):
every check that can fail before any work (config values, corpus paths, the teacher folder, block
length and `drop` against the teacher's shape, the tokenizer, eval-suite sizes), then its runs,
token budgets, FLOPs, time at the measured speed of committed records, and memory fit.
`distill_lib.cli` parses the command line and calls `print_plan`."""
from __future__ import annotations

from pathlib import Path

from distill_lib import methods
from distill_lib.config import ConfigError
from distill_lib.env import PROJECT_ROOT

#: Committed run records (`records/<profile>/runs/*.json`, as distill_lib.records writes them):
#: `plan` reads their measured speed.
RECORDS = PROJECT_ROOT / "records"
#: Corpora that are local and quick to read: `plan` loads them to check the eval-suite sizes.
LOCAL_CORPORA = ("web-bible", "text")
#: Vocabulary assumed for a pretrained tokenizer (not loaded by `plan`): GPT-2-sized.
GUESSED_VOCAB = 50_000


def print_plan(profile: str) -> int:
    """What a profile will do, computed offline from its config alone: every check that needs no
    download and no training (the config's values, corpus paths, the teacher folder, block length
    and `drop` against the teacher's shape, eval-suite sizes), then runs, token budgets, FLOPs, time
    and memory."""
    from distill_lib.study import load_study_config

    cfg = load_study_config(profile)
    _check_corpus_paths(cfg.data)
    teacher = teacher_shape(cfg)
    _check_teacher_fits(cfg, teacher)
    _check_teacher_tokenizer(cfg)
    suite_line = _check_suite_sizes(cfg)
    print(f"profile {cfg.name}: {cfg.description}")
    _print_data(cfg.data)
    print(f"  {suite_line}")
    if teacher["note"]:
        print(f"  {teacher['note']}")
    _print_runs(cfg)
    _print_compute(cfg, _measured_speeds(RECORDS / cfg.name / "runs"))
    _print_memory(cfg)
    return 0


def _print_data(d) -> None:
    from distill_lib.data import describe_corpus

    print(f"  data: {describe_corpus(d)}")
    tokenizer = f"{d.tokenizer} (vocab {d.vocab_size})" if d.tokenizer == "train-bpe" else d.tokenizer
    print(f"    max_documents {d.max_documents if d.max_documents is not None else 'all'}; "
          f"split validation {d.validation_fraction} / test {d.test_fraction} (seed {d.split_seed}); "
          f"tokenizer {tokenizer}; block {d.block_length}")


def _check_corpus_paths(data) -> None:
    """A `text` corpus entry that names nothing fails here, not when the data are prepared."""
    from distill_lib.data import missing_paths

    if data.corpus == "text":
        missing = missing_paths(data.paths)
        if missing:
            raise ConfigError(f"data.paths: {missing[0]!r} does not exist (no file, folder or glob match)")


def _read_model_config(folder: Path, key: str) -> dict:
    """config.json of a local model folder, checked to be a causal decoder of a supported family
    (what truncation needs), without loading any weights."""
    import json

    from distill_lib.models import FAMILIES, check_causal_config

    if not (folder / "config.json").is_file():
        what = "a file" if folder.is_file() else "a folder" if folder.is_dir() else "missing"
        raise ConfigError(f"{key}: {str(folder)!r} is not an HF model folder ({what}, no config.json)")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: {folder / 'config.json'} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{key}: {folder / 'config.json'} does not hold a model config")
    try:
        check_causal_config(config, repr(str(folder)))
    except ConfigError as err:
        raise ConfigError(f"{key}: {str(err).removeprefix('model: ')}") from None
    if config.get("model_type") not in FAMILIES:
        raise ConfigError(f"{key}: {str(folder)!r} is a {config.get('model_type')!r} model, a family whose truncation "
                          f"is not supported (supported: {', '.join(FAMILIES)})")
    return config


def teacher_shape(cfg) -> dict:
    """Layers and maximum positions of the profile's teacher, from what is readable offline: the
    config.json of a local `teacher_path` (or of a `pypi:` source already converted), else
    `teacher_model`. Refuses a `teacher_path` that is not a model, or a `pypi:` source whose package
    is missing. `note` says where the shape comes from when the teacher itself was not read."""
    from distill_lib.pretrained import converted_location, gguf_location, is_named_source

    m = cfg.teacher_model
    shape = {"layers": m.n_layers, "positions": m.max_position_embeddings, "source": "teacher_model", "note": None}
    path = cfg.teacher_path
    if path is None:
        return shape
    if is_named_source(path):
        gguf_location(path)  # the package is installed (else: the install command)
        folder = converted_location(path)
        if not (folder / "config.json").is_file():
            shape["note"] = f"teacher_path {path}: not converted yet; its shape is taken from teacher_model"
            return shape
    elif Path(path).expanduser().is_absolute() or Path(path).exists():
        folder = Path(path).expanduser()
    else:
        shape["note"] = f"teacher_path {path}: a hub name, not read offline; its shape is taken from teacher_model"
        return shape
    config = _read_model_config(folder, "teacher_path")
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    positions = config.get("max_position_embeddings", config.get("n_positions"))
    return {"layers": layers or m.n_layers, "positions": positions, "source": f"teacher_path {path}", "note": None}


def _check_teacher_fits(cfg, teacher: dict) -> None:
    """Block length and `drop` against the teacher's shape, for every strategy the profile trains."""
    from distill_lib.truncate import select_layers

    positions = teacher["positions"]
    if positions and cfg.data.block_length > positions:
        raise ConfigError(f"data.block_length: {cfg.data.block_length} exceeds the teacher's maximum positions "
                          f"({positions}, from {teacher['source']})")
    if positions and cfg.eval.max_length > positions:  # every model evaluated has the teacher's positions
        raise ConfigError(f"eval.max_length: {cfg.eval.max_length} exceeds the teacher's maximum positions "
                          f"({positions}, from {teacher['source']})")
    if "scratch" in cfg.methods and cfg.data.block_length > cfg.teacher_model.max_position_embeddings:
        raise ConfigError(f"data.block_length: {cfg.data.block_length} exceeds teacher_model.max_position_embeddings "
                          f"({cfg.teacher_model.max_position_embeddings}) of the from-scratch model")
    n = teacher["layers"]
    for strategy in dict.fromkeys([cfg.strategy, *cfg.configs, *cfg.extra_strategies]):
        try:  # importance strategies: any scores will do, only the count is checked
            select_layers(strategy, n, drop=cfg.drop, scores=[0.0] * n)
        except ConfigError as err:
            raise ConfigError(f"{err} (strategy {strategy!r}, teacher of {n} layers from {teacher['source']})") from None


def _check_teacher_tokenizer(cfg) -> None:
    """A pretrained teacher is truncated and distilled token id for token id: the data must be read
    with its own tokenizer. Checked offline where both are local folders (or a fresh BPE)."""
    if not cfg.teacher_path or cfg.data.tokenizer == cfg.teacher_path:
        return
    if cfg.data.tokenizer == "train-bpe":
        raise ConfigError(f"data.tokenizer: 'train-bpe' trains a new tokenizer, but the teacher ({cfg.teacher_path}) "
                          f"reads its own; set data.tokenizer: {cfg.teacher_path}")
    from distill_lib.data import has_tokenizer, load_tokenizer, vocabulary_hash

    folders = [Path(p).expanduser() for p in (cfg.data.tokenizer, cfg.teacher_path)]
    if all(has_tokenizer(f) for f in folders):
        ours, theirs = (load_tokenizer(f) for f in folders)
        if vocabulary_hash(ours) != vocabulary_hash(theirs):
            raise ConfigError(f"data.tokenizer: {cfg.data.tokenizer} ({len(ours)} tokens) is not the teacher's tokenizer "
                              f"({cfg.teacher_path}, {len(theirs)} tokens); set data.tokenizer: {cfg.teacher_path}")


def _check_suite_sizes(cfg) -> str:
    """Check every `eval.suite` size against what the held-out (test) split can supply, for corpora
    that are local and quick to read; returns the line `plan` prints about it."""
    if "offline" not in cfg.eval.task_sets:
        return "eval suite: not used (no 'offline' task set)"
    if cfg.data.corpus not in LOCAL_CORPORA:
        return f"eval suite: not checked (corpus {cfg.data.corpus!r} is read only when the data are prepared)"
    from distill_lib.data import load_documents, split_documents
    from distill_lib.tasks import suite_capacity

    held_out = split_documents(load_documents(cfg.data), cfg.data)["test"]
    suite = cfg.eval.suite
    available = suite_capacity(held_out, suite.cloze_context_words)
    for key, most in available.items():
        if getattr(suite, key) > most:
            raise ConfigError(f"eval.suite.{key}: the held-out (test) split of {len(held_out)} documents supplies "
                              f"at most {most}, {getattr(suite, key)} requested; lower it, or raise "
                              "data.test_fraction or the number of documents")
    sizes = ", ".join(f"{key} {getattr(suite, key)}/{most}" for key, most in available.items())
    return (f"eval suite from {len(held_out)} held-out documents: {sizes} "
            "(requested/at most, before the tokenizer's length limit)")


def _method_runs(cfg) -> dict[str, int]:
    """Trained runs per method or variant (the teacher included when the profile trains it)."""
    config_seeds = cfg.config_seeds or cfg.seeds
    # TF also trains notebook 01's configurations and extra strategies; a method with several
    # schedules (gradual removal) one run per schedule and seed
    tf = (len(cfg.configs) * len(config_seeds) + len(cfg.extra_strategies)
          + len(set(cfg.seeds_of("tf")) - set(config_seeds)))
    runs = {} if cfg.teacher_path else {"teacher": 1}
    for m in cfg.methods:
        base = methods.get(cfg.base_method(m))
        runs[m] = tf if m == "tf" else len(base.schedules(cfg)) * len(cfg.seeds_of(m))
    return runs


def _print_runs(cfg) -> None:
    tokens = lambda t: t.max_steps * t.batch_size * cfg.data.block_length  # noqa: E731
    shape_of = f"{cfg.teacher_model.n_layers} layers x d={cfg.teacher_model.hidden_size}"
    teacher = (f"{cfg.teacher_path} ({shape_of}, as teacher_model describes it)" if cfg.teacher_path
               else f"train {shape_of} for {tokens(cfg.teacher_train):,} tokens")
    print(f"  teacher: {teacher}")
    print(f"  students: drop {cfg.drop} ({cfg.strategy}), {tokens(cfg.student_train):,} tokens each, seeds {cfg.seeds}")
    n_runs = sum(n for m, n in _method_runs(cfg).items() if m != "teacher")
    left_out = [m for m in methods.CORE_METHODS if m not in cfg.methods]
    print(f"  runs: about {n_runs} student runs ({', '.join(cfg.methods)})"
          + (f"; left out: {', '.join(left_out)}" if left_out else "") + f"; eval task sets {cfg.eval.task_sets}")


def _vocab(cfg) -> int:
    return cfg.data.vocab_size if cfg.data.tokenizer == "train-bpe" else GUESSED_VOCAB


def _forward_flops(model_cfg, vocab: int, seq_len: int) -> float:
    """Forward FLOPs per token (distill_lib.flops) of a model of `model_cfg`, built on the meta device
    (no memory, no weights)."""
    import torch

    from distill_lib.flops import forward_flops_per_token
    from distill_lib.models import build_model

    with torch.device("meta"):
        return forward_flops_per_token(build_model(model_cfg, vocab, seed=0), seq_len)


def compute_estimate(cfg) -> list[dict]:
    """Per method: runs, training tokens per run and training FLOPs per token (forward + backward of
    the trained model, plus the teacher's forward where the objective needs it)."""
    import dataclasses

    from distill_lib.truncate import drop_count

    n, length, vocab = cfg.teacher_model.n_layers, cfg.data.block_length, _vocab(cfg)
    teacher = _forward_flops(cfg.teacher_model, vocab, length)
    with_layers = lambda k: dataclasses.replace(cfg.teacher_model, n_layers=k)  # noqa: E731
    student = _forward_flops(with_layers(n - drop_count(n, cfg.drop)), vocab, length)
    # as Study.run_config builds it (a fraction: of the depth, rounded; a number of layers: removed)
    kept = n - cfg.drop if isinstance(cfg.drop, int) else max(1, round(n * (1 - cfg.drop)))
    scratch = _forward_flops(with_layers(kept), vocab, length)
    rows = []
    for method, runs in _method_runs(cfg).items():
        if method == "teacher":
            train, per_token = cfg.teacher_train, 3 * teacher
        else:
            variant = cfg.variants.get(method, {})
            base = methods.get(variant.get("method", method))
            train = dataclasses.replace(base.base_training(cfg), **(variant.get("train") or {}))
            per_token = base.flops_per_token(student, teacher, scratch, train)
        steps = max(1, round(train.max_steps * cfg.budget_of(method)))
        rows.append({"method": method, "runs": runs, "tokens": steps * train.batch_size * length,
                     "flops_per_token": per_token})
    return rows


def _record_method(config: dict) -> str | None:
    """The method (or 'teacher') a run record belongs to, from its run name (e.g. 'kd-max-gap-s0',
    'gradual20480-max-gap-s0'), else from an objective only one method uses."""
    name = str(config.get("name", ""))
    if name == "teacher":
        return name
    for method in sorted(methods.METHODS, key=len, reverse=True):
        if name == method or name.startswith(method + "-") or (method == "gradual" and name.startswith(method)):
            return method
    objective = (config.get("train") or {}).get("objective")
    return objective if objective in ("kd", "offline-kd", "chop-distill") else None


def _measured_speeds(folder: Path) -> dict:
    """Median measured speed in the run records under `folder`: tokens/s per method, and FLOP/s over
    all records (for a method without records of its own). Empty when there are none."""
    import json
    import statistics

    tokens_per_s: dict[str, list[float]] = {}
    flops_per_s: list[float] = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        method = _record_method(record.get("config") or {})
        for row in record.get("metrics") or []:
            speed = row.get("tokens_per_s")
            if not isinstance(speed, (int, float)) or speed <= 0:
                continue
            if method:
                tokens_per_s.setdefault(method, []).append(speed)
            if row.get("flops") and row.get("tokens"):
                flops_per_s.append(speed * row["flops"] / row["tokens"])
    if not tokens_per_s and not flops_per_s:
        return {}
    return {"tokens_per_s": {m: statistics.median(v) for m, v in tokens_per_s.items()},
            "flops_per_s": statistics.median(flops_per_s) if flops_per_s else None}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print_compute(cfg, speeds: dict) -> None:
    rows = compute_estimate(cfg)
    vocab_note = "" if cfg.data.tokenizer == "train-bpe" else f"; vocabulary guessed as {GUESSED_VOCAB:,}"
    print(f"  compute per method (training tokens, FLOPs{', time at measured speed' if speeds else ''}{vocab_note}):")
    if not speeds:
        print(f"    no measured speed (no run records in records/{cfg.name}/runs/): tokens and FLOPs only")
    total_seconds, timed = 0.0, True
    for row in rows:
        tokens, flops = row["runs"] * row["tokens"], row["runs"] * row["tokens"] * row["flops_per_token"]
        line = f"    {row['method']:>12}: {row['runs']:>2} run(s) x {row['tokens']:,} tokens, {flops:.2e} FLOPs"
        measured = speeds.get("tokens_per_s", {}).get(row["method"])
        if measured:
            seconds = tokens / measured
            line += f", ~{_duration(seconds)} at the measured {measured:,.0f} tokens/s"
        elif speeds.get("flops_per_s"):
            seconds = flops / speeds["flops_per_s"]
            line += f", ~{_duration(seconds)} at the measured median {speeds['flops_per_s']:.2e} FLOP/s of other runs"
        else:
            seconds, timed = 0.0, False
            if speeds:
                line += ", no measured speed"
        total_seconds += seconds
        print(line)
    if timed:
        print(f"    total training time ~{_duration(total_seconds)} (evaluation not included)")


def _print_memory(cfg) -> None:
    from distill_lib.flops import ModelShape, halved, plan_memory

    m = cfg.teacher_model
    vocab = _vocab(cfg)
    params = 12 * m.n_layers * m.hidden_size**2 + 2 * vocab * m.hidden_size
    shape = ModelShape("teacher", params, m.n_layers, m.hidden_size, vocab)
    micro = cfg.student_train.micro_batch_size or cfg.student_train.batch_size
    for row in plan_memory(shape, halved(shape), micro, cfg.data.block_length,
                           precision=cfg.student_train.precision, optimizer=cfg.student_train.optimizer,
                           card_gib=max(cfg.plan_cards_gib)):
        print(f"  memory per device, micro-batch {micro}: {row['method']:>13} {row['total_gib']:.1f} GiB "
              f"(fits {row['card_gib']:.0f} GiB: {row['fits']})")
