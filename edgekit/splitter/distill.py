"""A sub-model's head over its classes plus "other", and its fine-tuning by distillation from the full model.

The head has one logit per class of the subset and one "other" logit; the sub-model is fine-tuned on the whole
training split (the "other" logit needs the other classes' images) with a loss mixing cross-entropy and
distillation from the full model, whose probabilities are collapsed to (own classes, sum of the rest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.data import Split
from edgekit.models.vit import VisionTransformer

# The teacher's probability of "other" is floored here: with every class in the subset it is 1 - 1 = 0 (or a
# rounding error below it), and a zero target would put log(0) in the distillation loss.
OTHER_FLOOR = 1e-8


@dataclass(frozen=True)
class DistillSettings:
    epochs: int
    lr: float
    temperature: float
    distill_weight: float  # of the distillation term; the rest is cross-entropy on the subset's labels
    seed: int
    batch: int = 64


def subset_head(full_head: nn.Linear, classes: tuple[int, ...]) -> nn.Linear:
    """The sub-model's head: the full head's rows of ``classes``, then an "other" row.

    With classes left over, "other" starts as the mean of their rows (an image of any of them scores on it).
    With none (one device: the sub-model serves every class) there is nothing to average: "other" gets a zero
    weight and a constant logit of log(OTHER_FLOOR), about -18, so that it starts where the distillation target
    puts it (probability ~0 next to any class's logit) and never wins an argmax; the loss then keeps it there
    and stays finite, where the mean of no rows was NaN.
    """
    head = nn.Linear(full_head.in_features, len(classes) + 1)
    others = [c for c in range(full_head.out_features) if c not in classes]
    with torch.no_grad():
        head.weight[: len(classes)] = full_head.weight[list(classes)]
        head.bias[: len(classes)] = full_head.bias[list(classes)]
        if others:
            head.weight[-1] = full_head.weight[others].mean(0)
            head.bias[-1] = full_head.bias[others].mean(0)
        else:
            head.weight[-1] = 0.0
            head.bias[-1] = math.log(OTHER_FLOOR)
    return head


def subset_targets(classes: tuple[int, ...], y: torch.Tensor) -> torch.Tensor:
    """Labels in the sub-model's head: its own classes 0..k-1, every other class k ("other")."""
    lookup = torch.full((int(y.max()) + 1,), len(classes), dtype=torch.long)
    lookup[list(classes)] = torch.arange(len(classes))
    return lookup[y]


def collapse(teacher_logits: torch.Tensor, classes: tuple[int, ...], temperature: float) -> torch.Tensor:
    """The teacher's tempered probabilities as (own classes, the rest summed into "other")."""
    probs = (teacher_logits / temperature).softmax(-1)
    own = probs[:, list(classes)]
    return torch.cat([own, (1 - own.sum(-1, keepdim=True)).clamp_min(OTHER_FLOOR)], dim=-1)


def distill(
    sub: VisionTransformer,
    classes: tuple[int, ...],
    x: torch.Tensor,
    y: torch.Tensor,
    teacher: torch.Tensor,
    settings: DistillSettings,
) -> None:
    """Fine-tune ``sub`` in place on (x, y) against the full model's logits ``teacher``; leaves it in eval mode."""
    if settings.epochs <= 0:
        sub.eval()
        return
    targets = subset_targets(classes, y)
    soft = collapse(teacher, classes, settings.temperature)
    optimizer = torch.optim.AdamW(sub.parameters(), lr=settings.lr, weight_decay=0.05)
    steps = settings.epochs * math.ceil(len(x) / settings.batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(settings.seed)
    t, alpha = settings.temperature, settings.distill_weight
    sub.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(order), settings.batch):
            idx = order[i : i + settings.batch]
            logits = sub(x[idx])
            kd = F.kl_div(F.log_softmax(logits / t, -1), soft[idx], reduction="batchmean") * t * t
            loss = alpha * kd + (1 - alpha) * F.cross_entropy(logits, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    sub.eval()


def subset_accuracy(sub: VisionTransformer, classes: tuple[int, ...], split: Split) -> float:
    """Accuracy of the sub-model's own head (its classes + other) on the held-out split."""
    y = subset_targets(classes, torch.from_numpy(split.y_test))
    with torch.no_grad():
        pred = sub(torch.from_numpy(split.x_test)).argmax(-1)
    return float((pred == y).float().mean())
