"""Optimisers with parameter groups, learning-rate schedules and linear warm-up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..models import spec, under


def head_path(model: nn.Module) -> str | None:
    info = getattr(model, "medtl", {})
    if "truncated" in info:
        return "head"
    if "arch" in info:
        return spec(info["arch"]).head
    return None


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0, lr_groups: Mapping[str, float] | None = None,
                 no_decay_1d: bool = False) -> list[dict]:
    """The optimiser's parameter groups over the **trainable** parameters (frozen ones are
    left out, so they stay bit-identical).

    Args:
        lr: the learning rate of parameters no group names.
        lr_groups: module-path prefix → learning rate; ``"head"`` means the table's head
            module and ``"body"`` everything else (the longest matching prefix wins), e.g.
            ``{"head": 1e-3, "body": 1e-4}`` or ``{"layer4": 1e-3, "fc": 1e-2}``.
        no_decay_1d: biases and other 1-D parameters (norms) get weight decay 0 (DINO's
            ``get_params_groups``, the feature-reuse study's default).
    """
    head = head_path(model)
    prefixes = {}
    for key, value in (lr_groups or {}).items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"lr_groups[{key!r}] must be a positive learning rate, got {value!r}")
        if key == "head":
            if head is None:
                raise ValueError("lr_groups 'head' needs a model built by medtl.models.create")
            prefixes[head] = float(value)
        elif key != "body":
            prefixes[key] = float(value)
    body_lr = float((lr_groups or {}).get("body", lr))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    unknown = [k for k in prefixes if not any(under(n, k) for n, _ in model.named_parameters())]
    if unknown:
        raise ValueError(f"lr_groups name module(s) {unknown} that the model does not have")
    groups: dict[tuple[float, float], list] = {}
    params = dict(model.named_parameters())
    for n in names:
        match = max((k for k in prefixes if under(n, k)), key=len, default=None)
        group_lr = prefixes[match] if match is not None else (lr if head is not None and under(n, head) else body_lr)
        wd = 0.0 if no_decay_1d and params[n].ndim <= 1 else weight_decay
        groups.setdefault((group_lr, wd), []).append(params[n])
    if not groups:
        raise ValueError("the model has no trainable parameter (all are frozen): nothing to fit")
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9, nesterov: bool | None = None,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD (Nesterov by default when momentum > 0, as the study), Adam or AdamW, over
    parameters or parameter groups (their own ``lr`` / ``weight_decay`` win)."""
    name = str(name).lower()
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if name == "sgd":
        nesterov = momentum > 0 if nesterov is None else nesterov
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: sgd, adam, adamw")


SCHEDULES = ("cosine", "step", "multistep", "plateau", None)


def make_schedule(opt, name: str | None, epochs: int, step_size: int = 15, milestones: Sequence[int] = (),
                  gamma: float = 0.1, plateau_patience: int = 5, plateau_mode: str = "min"):
    """Per-epoch schedules: cosine (T_max = epochs), step, multistep, plateau (on val loss,
    or on the monitored metric with ``plateau_mode="max"``) or None."""
    if name in (None, "none", "constant"):
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    if name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=plateau_mode, factor=gamma,
                                                          patience=plateau_patience)
    raise ValueError(f"unknown schedule {name!r}; valid: cosine, step, multistep, plateau, None")


def warmup(opt: torch.optim.Optimizer, step: int, steps: int, start: float = 1e-8) -> None:
    """Linear warm-up per iteration (the feature-reuse study's LinearWarmup): during the
    first ``steps`` iterations each group's lr rises from ``start`` to its base lr
    (``group["base_lr"]``, recorded at the first call)."""
    if steps <= 0 or step > steps:
        return
    for g in opt.param_groups:
        g.setdefault("base_lr", g["lr"])
        g["lr"] = start + (g["base_lr"] - start) * min(step, steps) / steps
