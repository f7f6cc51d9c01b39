"""Offline distillation (beyond the paper): run the teacher once over the training blocks, keep
its top-k logits per position on disk, then train the student from that file with the teacher
never in memory. Softmax over the stored top-k logits is exactly the teacher's distribution
renormalised over those k tokens, so any temperature can be applied at training time, and with
k = vocabulary size the loss equals online KD."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from distill_lib.models import final_hidden, logits_from_hidden
from distill_lib.storage import atomic_directory

LOG = logging.getLogger(__name__)


class TeacherCache:
    """Top-k teacher logits for every position of the listed training blocks."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.ids = np.load(self.folder / "topk_ids.npy", mmap_mode="r")
        self.logits = np.load(self.folder / "topk_logits.npy", mmap_mode="r")
        rows = np.full(self.meta["n_blocks"], -1, dtype=np.int64)
        rows[np.asarray(self.meta["blocks"], dtype=np.int64)] = np.arange(len(self.meta["blocks"]))
        self._row_of_block = rows

    def lookup(self, block_index: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._row_of_block[block_index.cpu().numpy()]
        if (rows < 0).any():
            raise KeyError(f"teacher cache {self.folder} lacks blocks {block_index[torch.as_tensor(rows < 0)].tolist()}")
        ids = torch.from_numpy(np.ascontiguousarray(self.ids[rows]).astype(np.int64))
        logits = torch.from_numpy(np.ascontiguousarray(self.logits[rows]).astype(np.float32))
        return ids.to(device), logits.to(device)


@torch.no_grad()
def build_teacher_cache(teacher, blocks: np.ndarray, block_indices, top_k: int, dtype: str, folder: Path,
                        batch_size: int = 16, device: str | torch.device = "cpu", log=LOG.info) -> TeacherCache:
    """Write (atomically) the teacher's top-k logits for positions 0..L-2 of each listed block
    (position t predicts token t+1; the last position predicts nothing in the block)."""
    folder = Path(folder)
    wanted = sorted({int(i) for i in block_indices})
    if not folder.exists():  # written atomically: an existing folder is complete
        started = time.perf_counter()
        teacher = teacher.to(device).eval()
        vocab = teacher.get_output_embeddings().weight.shape[0]
        k = min(top_k, vocab)
        length = blocks.shape[1] - 1
        store = np.float16 if dtype == "float16" else np.float32
        id_type = np.uint16 if vocab <= 65536 else np.int32

        def build(tmp: Path) -> None:
            ids_out = np.lib.format.open_memmap(tmp / "topk_ids.npy", "w+", id_type, (len(wanted), length, k))
            logits_out = np.lib.format.open_memmap(tmp / "topk_logits.npy", "w+", store, (len(wanted), length, k))
            for start in range(0, len(wanted), batch_size):
                rows = wanted[start:start + batch_size]
                ids = torch.from_numpy(blocks[rows].astype(np.int64)).to(device)
                hidden, _ = final_hidden(teacher, ids)
                logits = logits_from_hidden(teacher, hidden[:, :-1]).float()
                values, indices = logits.topk(k, dim=-1)
                ids_out[start:start + len(rows)] = indices.cpu().numpy().astype(id_type)
                logits_out[start:start + len(rows)] = values.cpu().numpy().astype(store)
            ids_out.flush()
            logits_out.flush()
            meta = {"top_k": k, "dtype": dtype, "n_blocks": int(blocks.shape[0]), "blocks": wanted,
                    "block_length": int(blocks.shape[1]), "seconds": time.perf_counter() - started,
                    "bytes": int(ids_out.nbytes + logits_out.nbytes)}
            (tmp / "meta.json").write_text(json.dumps(meta))

        atomic_directory(folder, build)
        if log:
            meta = json.loads((folder / "meta.json").read_text())
            log(f"offline KD: teacher top-{k} logits for {len(wanted)} blocks in {meta['seconds']:.1f} s, "
                f"{meta['bytes'] / 2**20:.1f} MiB")
    return TeacherCache(folder)
