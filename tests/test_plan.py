"""`plan`: what it checks before any training (corpus paths, eval-suite sizes) and what it prints
(data, tokens, FLOPs, time from measured speed). Small profiles in tmp_path; no model is trained."""
import json
import random
import re
from pathlib import Path

import pytest

import distill_lib.cli as cli
import distill_lib.planner as planner
from distill_lib.cli import main
from distill_lib.config import ConfigError, SuiteConfig
from distill_lib.data import Document, load_documents, split_documents
from distill_lib.study import load_study_config
from distill_lib.tasks import build_offline_suite, suite_capacity

WORDS = ("the river stone light garden voice morning city window letter road song field winter "
         "friend bread table story mountain silver").split()


def _corpus(folder: Path, n_docs: int = 40, sentences: int = 12) -> Path:
    """n_docs text files of plain sentences (8 words each), enough for every offline task."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        text = " ".join(" ".join(rng.choice(WORDS) for _ in range(8)).capitalize() + "." for _ in range(sentences))
        (folder / f"doc{i:02d}.txt").write_text(text + "\n")
    return folder


def _profile(tmp_path: Path, extra: str = "", paths: str | None = None, name: str = "planned") -> Path:
    paths = paths or f"[{_corpus(tmp_path / 'corpus')}]"
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"base: smoke\nname: {name}\n"
                    f"data: {{corpus: text, paths: {paths}, max_documents: 40, validation_fraction: 0.2, "
                    f"test_fraction: 0.2}}\n" + extra)
    return path


@pytest.fixture(autouse=True)
def _no_committed_records(tmp_path, monkeypatch):
    monkeypatch.setattr(planner, "RECORDS", tmp_path / "records")


def test_plan_prints_the_resolved_data_and_tokens_and_flops_without_measured_speed(tmp_path, capsys):
    assert main(["plan", "--profile", str(_profile(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert f"data: text (40 files from {tmp_path / 'corpus'}, one document per file)" in out
    assert "max_documents 40; split validation 0.2 / test 0.2 (seed 0)" in out
    assert re.search(r"eval suite from \d+ held-out documents: cloze_items 10/\d+", out)
    assert "no measured speed (no run records in records/planned/runs/): tokens and FLOPs only" in out
    teacher = next(line for line in out.splitlines() if line.strip().startswith("teacher:  1 run"))
    assert "20,480 tokens" in teacher and "FLOPs" in teacher and "tokens/s" not in out  # 40 x 8 x 64
    assert "total training time" not in out


def test_plan_estimates_time_from_the_median_speed_of_committed_records(tmp_path, capsys):
    runs = tmp_path / "records" / "planned" / "runs"
    runs.mkdir(parents=True)
    speeds = {"teacher": [100.0, 400.0, 500.0], "tf-max-gap-s0": [10.0, 1000.0, 1024.0]}
    for name, values in speeds.items():
        record = {"config": {"name": name, "train": {"objective": "lm", "seed": 0}}, "summary": {},
                  "metrics": [{"step": i + 1, "tokens_per_s": v, "tokens": 512 * (i + 1), "flops": 1e6 * 512 * (i + 1)}
                              for i, v in enumerate(values)]}
        (runs / f"{name}.json").write_text(json.dumps(record))
    assert main(["plan", "--profile", str(_profile(tmp_path))]) == 0
    out = capsys.readouterr().out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if "run(s) x" in line}
    # tf: 5 configs x 2 seeds + 4 extra strategies = 14 runs of 12 x 8 x 64 = 6,144 tokens at 1,000 tokens/s
    assert "14 run(s) x 6,144 tokens" in lines["tf"] and "~86 s at the measured 1,000 tokens/s" in lines["tf"]
    assert "~51 s at the measured 400 tokens/s" in lines["teacher"]  # 20,480 tokens
    # a method without records of its own: its FLOPs at the median FLOP/s of all records
    # (1e6 FLOPs per token x the median 450 tokens/s of all six rows)
    assert "at the measured median 4.50e+08 FLOP/s of other runs" in lines["kd"]
    assert "total training time" in out


def test_plan_refuses_a_corpus_path_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["plan", "--profile", str(_profile(tmp_path, paths=f"[{missing}]"))]) != 0
    captured = capsys.readouterr()
    assert captured.err == f"error: data.paths: {str(missing)!r} does not exist (no file, folder or glob match)\n"
    assert captured.out == ""


@pytest.mark.parametrize("key", ["cloze_items", "choice_items", "pair_items", "bpb_documents"])
def test_plan_refuses_an_eval_suite_size_the_held_out_split_cannot_supply(tmp_path, capsys, key):
    profile = _profile(tmp_path, f"eval: {{suite: {{{key}: 100000}}}}\n")
    cfg = load_study_config(profile)
    held_out = split_documents(load_documents(cfg.data), cfg.data)["test"]
    most = suite_capacity(held_out, cfg.eval.suite.cloze_context_words)[key]
    assert main(["plan", "--profile", str(profile)]) != 0
    err = capsys.readouterr().err
    assert err.startswith(f"error: eval.suite.{key}: the held-out (test) split of {len(held_out)} documents "
                          f"supplies at most {most}, 100000 requested") and err.count("\n") == 1


def test_suite_capacity_is_exactly_what_the_suite_builder_can_draw(tmp_path):
    docs = [Document(f"d{i}", p.read_text()) for i, p in enumerate(sorted(_corpus(tmp_path / "c", 6).iterdir()))]
    most = suite_capacity(docs, cloze_context_words=30)
    assert most["bpb_documents"] == 6 and all(v > 0 for v in most.values())
    sizes = {k: most[k] for k in ("cloze_items", "choice_items", "pair_items")}
    build_offline_suite(docs, tmp_path / "suite", SuiteConfig(**sizes, bpb_documents=6))
    for key in sizes:
        with pytest.raises(ConfigError, match="fewer than the"):
            build_offline_suite(docs, tmp_path / "suite", SuiteConfig(**{**sizes, key: sizes[key] + 1}))


def test_one_held_out_document_cannot_supply_choice_items(tmp_path):
    """A choice item takes its distractors from other documents: with one document the suite
    builder would never finish, so `plan` reports that none can be built."""
    doc = Document("only", (_corpus(tmp_path / "c", 1) / "doc00.txt").read_text())
    assert suite_capacity([doc], cloze_context_words=30)["choice_items"] == 0


# --- profiles that would fail later: `plan` refuses them, in one line naming the key ------------------
def _plan_error(tmp_path, capsys, extra: str) -> str:
    assert main(["plan", "--profile", str(_profile(tmp_path, extra))]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err[len("error: "):].strip()


def _model_folder(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("extra, message", [
    ("drop: 1.5\n", "drop: a fraction must be in (0, 1), got 1.5; an integer is a number of layers (e.g. 2)"),
    ("drop: 1.0\n", "drop: a fraction must be in (0, 1), got 1.0; an integer is a number of layers (e.g. 1)"),
    ("drop: 0.1\n", "drop: must remove between 1 and 3 of the 4 layers, 0.1 of 4 layers rounds to 0 (strategy "
                    "'max-gap', teacher of 4 layers from teacher_model)"),
    ("drop: 0.75\n", "drop: strategy 'max-gap' keeps the first and last layer, so at most 2 of 4 layers can be "
                     "removed, got 3"),
    ("student_train: {batch_size: 8, micro_batch_size: 3}\n",
     "student_train.micro_batch_size: 3 does not divide student_train.batch_size (8); use a divisor of it, e.g. 2"),
    ("data: {block_length: 128}\n", "data.block_length: 128 exceeds the teacher's maximum positions (64, from "
                                    "teacher_model)"),
    ("eval: {max_length: 65}\n", "eval.max_length: 65 exceeds the teacher's maximum positions (64, from teacher_model)"),
    ("teacher_model: {family: bert}\n", "teacher_model.family: unknown 'bert' (valid: llama,"),
    ("teacher_path: ./notes.txt\n", "is not an HF model folder (a file, no config.json)"),
    ("teacher_path: ./corpus\n", "is not an HF model folder (a folder, no config.json)"),
    ("teacher_path: ./missing-model\n", "is not an HF model folder (missing, no config.json)"),
    ("teacher_path: ./t5\n", "teacher_path: '{tmp}/t5' is a 't5' model (T5ForConditionalGeneration), not a causal "
                             "decoder-only LM; supported families: llama,"),
    ("teacher_path: ./bloom\n", "teacher_path: '{tmp}/bloom' is a 'bloom' model, a family whose truncation is not "
                                "supported (supported: llama,"),
    ("teacher_path: ./gpt2-long\ndata: {block_length: 128}\n",
     "data.block_length: 128 exceeds the teacher's maximum positions (64, from teacher_path {tmp}/gpt2-long)"),
    ("teacher_path: ./gpt2-long\ndrop: 0.9\n", "drop: must remove between 1 and 2 of the 3 layers, 0.9 of 3 "
                                                "layers rounds to 3 (strategy 'max-gap', teacher of 3 layers from "
                                                "teacher_path {tmp}/gpt2-long)"),
    # 0 layers: "a fraction must be in (0, 1), got 0.0" while StudyConfig.drop is a float (study.py),
    # "a number of layers to remove must be >= 1, got 0" once it takes integers
    ("drop: 0\n", "drop: a "),
    ("seeds: [0, 1.5]\n", "seeds[1]: expected an integer, got 1.5"),
    ("student_train: {lr: '1e-3'}\n", "student_train.lr: expected a number, got '1e-3'"),
    ("name: [a]\n", "name: expected a string, got ['a']"),
])
def test_plan_refuses_a_profile_that_would_fail_later(tmp_path, capsys, extra, message):
    (tmp_path / "notes.txt").write_text("not a model\n")
    _model_folder(tmp_path / "t5", {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
                                    "is_encoder_decoder": True})
    _model_folder(tmp_path / "bloom", {"model_type": "bloom", "architectures": ["BloomForCausalLM"]})
    _model_folder(tmp_path / "gpt2-long", {"model_type": "gpt2", "n_layer": 3, "n_positions": 64})
    expected = message.replace("{tmp}", str(tmp_path))
    got = _plan_error(tmp_path, capsys, extra)
    assert got.startswith(expected) if not expected.startswith("is not") else expected in got, got


def test_plan_reads_an_integer_drop_as_a_number_of_layers(tmp_path, capsys):
    assert main(["plan", "--profile", str(_profile(tmp_path, "drop: 2\n"))]) == 0
    assert "students: drop 2 (max-gap)" in capsys.readouterr().out


def test_plan_refuses_a_malformed_profile_in_one_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nstudent_train: {lr: 0.001, max_steps: [1, 2}\n")
    assert main(["plan", "--profile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: profile: {path} is not valid YAML: ")
    assert "line 2, column" in err and err.count("\n") == 1


def test_main_shortens_input_errors_only_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def bug(profile):
        raise ValueError("a bug in the library, not a bad input")

    monkeypatch.setattr(cli, "print_plan", bug)
    with pytest.raises(ValueError, match="a bug in the library"):
        main(["plan", "--profile", str(_profile(tmp_path))])


def test_plan_names_a_corpus_file_that_is_not_utf8(tmp_path, capsys):
    bad = _corpus(tmp_path / "corpus") / "doc99.txt"
    bad.write_bytes(b"\xff\xfe not utf-8")
    assert _plan_error(tmp_path, capsys, "") == (
        f"data.paths: {bad} is not UTF-8 text (byte 0xff at offset 0); convert it (e.g. `iconv -f latin1 -t utf-8`) "
        "or leave it out of data.paths (list the files or a glob that skips it)")


def test_plan_refuses_a_data_tokenizer_that_is_not_the_pretrained_teachers(tmp_path, capsys):
    from distill_lib.data import train_bpe_tokenizer

    teacher = _model_folder(tmp_path / "teacher", {"model_type": "llama", "num_hidden_layers": 4,
                                                   "max_position_embeddings": 128, "architectures": ["LlamaForCausalLM"]})
    assert _plan_error(tmp_path, capsys, "teacher_path: ./teacher\n") == (
        f"data.tokenizer: 'train-bpe' trains a new tokenizer, but the teacher ({teacher}) reads its own; "
        f"set data.tokenizer: {teacher}")
    texts = [p.read_text() for p in sorted(_corpus(tmp_path / "corpus").iterdir())]
    train_bpe_tokenizer(texts, 280).save_pretrained(teacher)
    train_bpe_tokenizer([t[::-1] for t in texts], 280).save_pretrained(tmp_path / "other")
    assert _plan_error(tmp_path, capsys, "teacher_path: ./teacher\ndata: {tokenizer: ./other}\n").startswith(
        f"data.tokenizer: {tmp_path / 'other'} (")
    assert main(["plan", "--profile", str(_profile(tmp_path, "teacher_path: ./teacher\ndata: {tokenizer: ./teacher}\n"))]) == 0
