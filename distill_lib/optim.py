"""Optimizers the paper uses that torch lacks: Lion (Chen et al. 2023), the paper's choice for the
300M / 1.1B models (betas 0.9 / 0.95, weight decay 1e-4)."""
from __future__ import annotations

import torch


class Lion(torch.optim.Optimizer):
    """Lion: update = sign(β1·m + (1-β1)·g); θ ← θ·(1 - lr·wd) - lr·update; m ← β2·m + (1-β2)·g.
    One moment per parameter (`exp_avg`), half of AdamW's optimizer memory."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr: must be > 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas: each must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = exp_avg.mul(beta1).add_(p.grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss
