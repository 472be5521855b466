"""Optimizer parameter groups: CLIP towers vs new modules, no weight decay where it does not belong."""

from torch import nn

_NO_DECAY_NAMES = ("embedding", "logit_scale", "class_embedding", "head_token", "role", "positional")


def _no_decay(name: str, p: nn.Parameter) -> bool:
    return p.ndim < 2 or any(k in name for k in _NO_DECAY_NAMES)


def parameter_groups(model, tower_lr: float, new_lr: float, weight_decay: float) -> list[dict]:
    """Four groups: {towers, new modules} x {decay, no decay}; frozen parameters are left out.

    Norms, biases, embeddings (token, positional, class, role, <head>) and temperatures get no
    weight decay.
    """
    groups = []
    for label, params, lr in (("towers", model.tower_parameters(), tower_lr), ("new", model.new_parameters(), new_lr)):
        decay = [p for n, p in params if p.requires_grad and not _no_decay(n, p)]
        no_decay = [p for n, p in params if p.requires_grad and _no_decay(n, p)]
        groups.append({"name": f"{label}", "params": decay, "lr": lr, "weight_decay": weight_decay})
        groups.append({"name": f"{label}_no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]
