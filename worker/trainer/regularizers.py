"""Forgetting control: penalties that pull trained encoder weights towards their start.

L2-SP (Li et al., 2018, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks") adds lambda·||θ − θ_start||²; EWC (Kirkpatrick et al., 2017, "Overcoming
catastrophic forgetting in neural networks") adds lambda·Σ F·(θ − θ_start)², with F the
diagonal Fisher information of the earlier version on its own data. Both are written without
the papers' factor 1/2, so the penalty is exactly the formula above.

The penalty is not added to the loss that AdamW minimises. Adam divides each gradient by its own
running scale, so the tiny penalty gradient of a weight that the task never touches (most
word-embedding rows) would become a full learning-rate step, and the penalty would make the
weights drift more, not less. As AdamW does for weight decay, the penalty takes its own plain
gradient step after each optimizer step instead, with the parameter's current learning rate
lr: θ ← θ − lr·2·lambda·w·(θ − θ_start), where w is F for EWC and 1 for L2-SP, and the
factor lr·2·lambda·w is capped at 1 so a step never overshoots the anchor.
"""

from collections.abc import Iterable

import torch
from torch import nn


class AnchorPenalty:
    """lambda·Σ w·(θ − θ_start)² over named parameters, with per-element weights w."""

    def __init__(
        self,
        parameters: dict[str, nn.Parameter],
        strength: float,
        weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.parameters = parameters
        self.strength = strength
        self.anchors = {name: p.detach().clone() for name, p in parameters.items()}
        self.weights = weights

    def _weighted(self, name: str, difference: torch.Tensor) -> torch.Tensor:
        return difference if self.weights is None else difference * self.weights[name]

    @torch.no_grad()
    def penalty(self) -> float:
        """Return the current value of the penalty."""
        total = 0.0
        for name, parameter in self.parameters.items():
            difference = parameter.float() - self.anchors[name].float()
            total += float((self._weighted(name, difference) * difference).sum())
        return self.strength * total

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Take one gradient step on the penalty for every parameter that trains now.

        Each parameter moves by its optimizer group's current learning rate lr:
        θ ← θ − min(1, lr·2·lambda·w)·(θ − θ_start).
        """
        names = {id(parameter): name for name, parameter in self.parameters.items()}
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                name = names.get(id(parameter))
                if name is None or not parameter.requires_grad:
                    continue
                rate = group["lr"] * 2 * self.strength
                if self.weights is None:
                    factor = min(1.0, rate)
                else:
                    factor = (self.weights[name] * rate).clamp_(max=1.0)
                parameter.sub_(factor * (parameter - self.anchors[name]))


def l2sp_penalty(parameters: dict[str, nn.Parameter], strength: float) -> AnchorPenalty:
    """Return the L2-SP penalty anchored at the parameters' current values."""
    return AnchorPenalty(parameters, strength)


def ewc_penalty(
    parameters: dict[str, nn.Parameter], strength: float, fisher: dict[str, torch.Tensor]
) -> AnchorPenalty:
    """Return the EWC penalty anchored at the parameters' current values, weighted by `fisher`."""
    return AnchorPenalty(parameters, strength, weights=fisher)


def estimate_fisher(
    parameters: dict[str, nn.Parameter], row_losses: Iterable[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Return the diagonal empirical Fisher E[(∂ loss / ∂θ)²] over the rows of `row_losses`.

    Args:
        parameters: the parameters to estimate it for, which must require grad.
        row_losses: the loss of one example at a time, its negative log-likelihood (computed
            lazily by a generator, so only one graph is alive). Gradients are taken per
            example because the square of a batch's mean gradient is not the mean square.
    """
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in parameters.items()}
    count = 0
    for loss in row_losses:
        gradients = torch.autograd.grad(loss, list(parameters.values()), allow_unused=True)
        for (name, _), gradient in zip(parameters.items(), gradients, strict=True):
            if gradient is not None:
                fisher[name] += gradient.float() ** 2
        count += 1
    if count:
        for value in fisher.values():
            value /= count
    return fisher
