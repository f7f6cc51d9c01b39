"""Healing methods: which parameters the one training loop trains, and how a truncated student is
made ready for it (`healing` in the config; None or 'full' trains everything, as the paper does).

- `lora`: LoRA adapters (peft, `target_modules="all-linear"`: every linear layer of the decoder
  layers, not the LM head) on the frozen student; only the adapters train. A checkpoint holds the
  frozen base as a plain HF folder (`model/`) and the adapters as a standard PEFT adapter folder
  (`adapter/`); the run's final model is the two merged (`merge_and_unload`): a plain checkpoint.
- `partial`: only the LM head, the final norm (every decoder parameter outside the layers and the
  embedding tables) and the last k layers train. With tied embeddings the head *is* the embedding
  matrix, so it trains too, through its use as the head only: the embedding lookup's output is
  detached, so no gradient (and no backward pass) goes through the frozen layers below, and the
  saved model keeps its tying. The input side of the matrix moves with the head.
- `replace` (LLM-Streamline, Chen et al., ICLR 2025): the removed layers must be one contiguous block
  [s, e). The student gets one new layer in its place, a copy of teacher layer e - 1. Stage 1
  (`train.fit_replacement`, at initialisation, through the one loop with `ReplacementFit` as its
  objective and `stage1_train_config` as its settings) trains only that layer to map the block's
  input to the block's output (MSE against the teacher's hidden states) on training blocks; stage 2
  is the run itself, every parameter training with the run's objective. The new layer's parameters are the extra ones.

Each run's summary gets `healing_summary`: trainable parameters, optimizer-state bytes (the tensors of
the optimizer state, this process's), mean tokens/s, and the method's own record.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from distill_lib.config import UNSCORED_STRATEGIES, ConfigError, RunConfig
from distill_lib.flops import StepFlops, attention_width, matmul_weights
from distill_lib.models import decoder_layers, embedding_parameters

#: peft's module selector for LoRA: every nn.Linear (GPT-2: Conv1D) except the output layer.
LORA_TARGETS = "all-linear"
#: The adapter name peft gives a single adapter.
ADAPTER = "default"


def method_of(run: RunConfig) -> str:
    return run.healing.method if run.healing is not None else "full"


# ---------------------------------------------------------------------------------------------
# replace: the removed block, the new layer, stage 1
# ---------------------------------------------------------------------------------------------
def removed_block(keep: list[int], n_layers: int, strategy: str) -> list[int]:
    """The removed layers of a truncation that keeps `keep` of `n_layers`, refused (one line) unless
    they are one contiguous block."""
    removed = [i for i in range(n_layers) if i not in set(keep)]
    if not removed or removed != list(range(removed[0], removed[-1] + 1)):
        raise ConfigError(f"healing.method: 'replace' needs the removed layers to form one contiguous block, but "
                          f"init.strategy {strategy!r} removes layers {removed} of {n_layers}; use a block strategy "
                          "(input, output, middle, angular, best-block) or explicit with consecutive layers")
    return removed


def check_replace_block(run: RunConfig, teacher_folder: str | None) -> None:
    """Before anything expensive: a `replace` run whose layers are chosen without scores must remove
    one block of the teacher's depth (read from its config.json). Scored strategies are checked by
    RunConfig (block strategies only) and again once chosen."""
    if method_of(run) != "replace" or run.init.strategy not in UNSCORED_STRATEGIES or teacher_folder is None:
        return
    config = Path(teacher_folder) / "config.json"
    if not config.is_file():
        return  # a named source or hub name: checked once the layers are chosen, before stage 1
    raw = json.loads(config.read_text())
    n_layers = raw.get("num_hidden_layers") or raw.get("n_layer")
    if not isinstance(n_layers, int):
        return
    from distill_lib.truncate import select_layers

    keep = select_layers(run.init.strategy, n_layers, drop=run.init.drop, remove=run.init.remove)
    removed_block(keep, n_layers, run.init.strategy)


def replacement_student(teacher: nn.Module, truncated: nn.Module, keep: list[int],
                        strategy: str) -> tuple[nn.Module, list[int]]:
    """The kept teacher layers with one new layer where the removed block was: a copy of the block's
    last layer (so `config.source_layers` names it), and the truncation's selection record
    (`config.layer_selection`) of `truncated`. Returns (student, block)."""
    from distill_lib.truncate import truncate

    block = removed_block(keep, len(decoder_layers(teacher)), strategy)
    student = truncate(teacher, sorted(keep + [block[-1]]))
    if getattr(truncated.config, "layer_selection", None) is not None:
        student.config.layer_selection = truncated.config.layer_selection
    student.config.replaced_layers = list(block)  # which teacher layers the new one stands for
    return student, block


class _Reached(Exception):
    """Ends a forward pass at the layer whose output is wanted."""


def layer_output(model: nn.Module, index: int, input_ids: torch.Tensor) -> torch.Tensor:
    """The hidden states leaving decoder layer `index` of `model`; the forward stops there (no later
    layer, no LM head)."""
    box = {}

    def grab(module, args, output):
        box["hidden"] = output[0] if isinstance(output, tuple) else output
        raise _Reached

    handle = decoder_layers(model)[index].register_forward_hook(grab)
    try:
        model.base_model(input_ids=input_ids, use_cache=False)
    except _Reached:
        pass
    finally:
        handle.remove()
    return box["hidden"]


def stage1_train_config(run: RunConfig):
    """Stage 1's training settings, the run's own (batch, seed, betas, clipping, precision) except:
    healing.replace_steps steps of AdamW at peak lr healing.replace_lr (or train.lr), no weight decay,
    no warm-up; its schedule is torch's cosine annealing (`loop.cosine_annealing_lrs`)."""
    h = run.healing
    return dataclasses.replace(run.train, max_steps=h.replace_steps, lr=h.replace_lr or run.train.lr, optimizer="adamw",
                               weight_decay=0.0, warmup_steps=0)


class ReplacementFit(nn.Module):
    """Stage 1's objective: the MSE between the student's output of its new layer (`block[0]`) and
    the teacher's output of the removed block's last layer. The student's layers below it are the
    teacher's, frozen, so both see the same input. The teacher is held outside the module's
    parameters (it never trains, and no optimizer or clipping should see it)."""

    def __init__(self, teacher: nn.Module, block: list[int]):
        super().__init__()
        self.__dict__["teacher"] = teacher  # not registered: not a parameter of the training module
        self.block = list(block)

    def forward(self, student: nn.Module, input_ids: torch.Tensor, block_index=None):
        with torch.no_grad():
            target = layer_output(self.teacher, self.block[-1], input_ids)
        loss = torch.nn.functional.mse_loss(layer_output(student, self.block[0], input_ids).float(), target.float())
        return loss, {}


def _layer_forward_flops(layer: nn.Module, seq_len: int, d_attn: int) -> float:
    return 2.0 * matmul_weights(layer) + 4.0 * seq_len * d_attn


def stage1_flops_per_token(teacher: nn.Module, student: nn.Module, block: list[int], seq_len: int) -> float:
    """Stage 1 per token: the teacher's layers up to the block's end and the student's up to the new
    layer, forward, plus the new layer's backward (2x its forward)."""
    _, d_t = attention_width(teacher.config)
    _, d_s = attention_width(student.config)
    t_layers, s_layers = decoder_layers(teacher), decoder_layers(student)
    new = _layer_forward_flops(s_layers[block[0]], seq_len, d_s)
    return (sum(_layer_forward_flops(t_layers[i], seq_len, d_t) for i in range(block[-1] + 1))
            + sum(_layer_forward_flops(s_layers[i], seq_len, d_s) for i in range(block[0])) + 3 * new)


# ---------------------------------------------------------------------------------------------
# lora and partial: what trains
# ---------------------------------------------------------------------------------------------
def prepare(run: RunConfig, student: nn.Module) -> nn.Module:
    """The student as the loop trains it: LoRA adapters added (seeded with train.seed; a student
    restored from a checkpoint has its own already) or, for 'partial', everything but the head,
    final norm and last layers frozen. 'full' and 'replace' (stage 2) train every parameter."""
    method = method_of(run)
    if method == "lora" and not has_adapter(student):
        from peft import LoraConfig, get_peft_model

        h = run.healing
        config = LoraConfig(r=h.lora_rank, lora_alpha=h.lora_alpha, lora_dropout=h.lora_dropout,
                            target_modules=LORA_TARGETS)
        with torch.random.fork_rng():
            torch.manual_seed(run.train.seed)  # lora_A's random init, the same in every run of this seed
            get_peft_model(student, config)  # injects the adapters into `student` itself, freezes the rest
    elif method == "partial":
        freeze_all_but_top(student, run.healing.partial_layers)
    return student


def has_adapter(model: nn.Module) -> bool:
    return bool(getattr(model, "peft_config", None))


def tied_embeddings(model: nn.Module) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and out.weight is inp.weight


def top_parameters(model: nn.Module, layers: int) -> list[nn.Parameter]:
    """What 'partial' trains: the last `layers` decoder layers, the final norm (every parameter of the
    decoder outside its layers and embedding tables) and the LM head (tied: the embedding matrix)."""
    stack = decoder_layers(model)
    if layers > len(stack):
        raise ConfigError(f"healing.partial_layers: {layers} exceeds the student's {len(stack)} layers")
    inside = {id(p) for layer in stack for p in layer.parameters()}
    embeddings = {id(p) for p in embedding_parameters(model)}
    norm = [p for p in model.base_model.parameters() if id(p) not in inside | embeddings]
    top = [p for layer in stack[len(stack) - layers:] for p in layer.parameters()]
    return top + norm + list(model.get_output_embeddings().parameters())


def _detached(module, args, output):
    return output.detach()


def freeze_all_but_top(model: nn.Module, layers: int) -> None:
    """'partial': only `top_parameters` train; with tied embeddings the lookup's output is detached
    (the matrix learns through the head only, no backward through the frozen layers)."""
    trained = top_parameters(model, layers)
    model.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    if tied_embeddings(model):
        model.get_input_embeddings().register_forward_hook(_detached)


def step_flops(run: RunConfig, student: nn.Module, seq_len: int, flops: StepFlops) -> StepFlops:
    """The student's backward FLOPs per token under the healing method (forward and teacher as
    `flops`). Full: 2x forward. LoRA: activation gradients through every layer (2 FLOPs per frozen
    weight, the attention products twice their forward) plus the adapters' weight gradients. Partial:
    2x the forward of what trains (last layers and head); nothing below them is differentiated."""
    method = method_of(run)
    if method == "lora":
        adapters = sum(m.weight.numel() for name, m in student.named_modules()
                       if isinstance(m, nn.Linear) and ".lora_" in f".{name}")
        n_layers, d_attn = attention_width(student.config)
        backward = flops.student_forward + 4.0 * n_layers * seq_len * d_attn + 2.0 * adapters
    elif method == "partial":
        _, d_attn = attention_width(student.config)
        stack = decoder_layers(student)
        top = stack[len(stack) - run.healing.partial_layers:]
        head = 2.0 * student.get_output_embeddings().weight.numel()
        backward = 2.0 * (head + sum(_layer_forward_flops(layer, seq_len, d_attn) for layer in top))
    else:
        return flops
    return dataclasses.replace(flops, student_backward=backward)


# ---------------------------------------------------------------------------------------------
# LoRA checkpoints: frozen base as a plain HF folder, adapters as a PEFT adapter folder
# ---------------------------------------------------------------------------------------------
def split_adapter(model: nn.Module, weights: dict) -> dict:
    """Take the LoRA tensors out of `weights` (a state dict of `model`, keys as in the model) and
    give the wrapped linear layers their plain names back (`q_proj.base_layer.weight` ->
    `q_proj.weight`), so what is left saves as a plain HF checkpoint of the frozen base. Returns the
    adapter tensors keyed as a PEFT adapter file (`base_model.model.<module>.lora_A.weight`); {}
    for a model without adapters."""
    if not has_adapter(model):
        return {}
    from peft import get_peft_model_state_dict

    lora = {k: weights.pop(k) for k in [k for k in weights if ".lora_" in k]}
    for key in [k for k in weights if ".base_layer." in k]:
        weights[key.replace(".base_layer.", ".")] = weights.pop(key)
    adapter = get_peft_model_state_dict(model, state_dict=lora, adapter_name=ADAPTER)
    return {f"base_model.model.{k}": v.contiguous() for k, v in adapter.items()}


def write_adapter(model: nn.Module, adapter: dict, folder: Path) -> None:
    """A standard PEFT adapter folder (adapter_config.json, adapter_model.safetensors)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.peft_config[ADAPTER].save_pretrained(str(folder))
    save_file(adapter, folder / "adapter_model.safetensors")


def with_adapter(base: nn.Module, folder: Path, trainable: bool = True) -> nn.Module:
    """`base` with the adapters of a PEFT adapter folder injected into it (in place)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder), is_trainable=trainable).base_model.model


def merged_model(checkpoint: Path) -> nn.Module:
    """The final model of a LoRA run: the checkpoint's base with its adapters merged."""
    from peft import PeftModel

    from distill_lib.models import load_causal_lm

    base = load_causal_lm(Path(checkpoint) / "model")
    return PeftModel.from_pretrained(base, str(Path(checkpoint) / "adapter")).merge_and_unload()


# ---------------------------------------------------------------------------------------------
# What a run records
# ---------------------------------------------------------------------------------------------
def optimizer_state_bytes(optimizer) -> int:
    """Bytes of the optimizer's state tensors (moments, step counters) on this process."""
    optimizer = getattr(optimizer, "optimizer", optimizer)
    return sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values()
               if torch.is_tensor(v))


def _unique_numel(params) -> int:
    return sum({id(p): p.numel() for p in params}.values())


def healing_summary(run: RunConfig, module: nn.Module, optimizer, state: dict) -> dict:
    """Trainable and total parameters of the training module (student and objective; tied weights
    once), optimizer-state bytes, mean tokens/s over the run, and the method's record."""
    student = module.student
    record = {"method": method_of(run)}
    if run.healing is not None:
        record.update({k: v for k, v in dataclasses.asdict(run.healing).items() if k.startswith(record["method"])})
    if "healing" in state:  # replace: stage 1
        stage1 = state["healing"]
        record["stage1"] = stage1
        record["extra_parameters"] = _unique_numel(decoder_layers(student)[stage1["position"]].parameters())
    return {"trainable_parameters": _unique_numel(p for p in module.parameters() if p.requires_grad),
            "total_parameters": _unique_numel(module.parameters()),
            "optimizer_state_bytes": optimizer_state_bytes(optimizer),
            "tokens_per_s": state["tokens"] / state["wall_seconds"] if state["wall_seconds"] else None,
            "healing": record}
