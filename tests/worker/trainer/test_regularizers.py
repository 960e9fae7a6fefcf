"""L2-SP and EWC penalties, their gradients, and the Fisher estimate."""

import pytest
import torch
from torch import nn

from worker.trainer.regularizers import estimate_fisher, ewc_penalty, l2sp_penalty


def named_parameters():
    torch.manual_seed(0)
    return {"w": nn.Parameter(torch.randn(3, 4)), "b": nn.Parameter(torch.randn(4))}


def test_l2sp_is_zero_at_anchor_and_quadratic_away():
    parameters = named_parameters()
    penalty = l2sp_penalty(parameters, strength=0.5)
    assert penalty.penalty() == 0.0

    with torch.no_grad():
        parameters["w"] += 0.1
        parameters["b"][0] -= 2.0

    assert penalty.penalty() == pytest.approx(0.5 * (12 * 0.01 + 4.0), rel=1e-5)
    with torch.no_grad():
        parameters["w"] += 0.1
    assert penalty.penalty() == pytest.approx(0.5 * (12 * 0.04 + 4.0), rel=1e-5)


def test_ewc_weights_each_element_by_fisher():
    parameters = named_parameters()
    fisher = {"w": torch.zeros(3, 4), "b": torch.arange(4.0)}
    penalty = ewc_penalty(parameters, strength=2.0, fisher=fisher)
    assert penalty.penalty() == 0.0

    with torch.no_grad():
        parameters["w"] += 5.0  # zero Fisher: free to move
        parameters["b"] += 0.5

    assert penalty.penalty() == pytest.approx(2.0 * 0.25 * (0 + 1 + 2 + 3), rel=1e-5)


def sgd_over(parameters, lr):
    return torch.optim.SGD(
        [{"params": [parameters["w"]], "lr": lr}, {"params": [parameters["b"]], "lr": 2 * lr}]
    )


def test_penalty_step_follows_its_gradient():
    parameters = named_parameters()
    fisher = {"w": torch.rand(3, 4), "b": torch.rand(4)}
    penalty = ewc_penalty(parameters, strength=0.3, fisher=fisher)
    with torch.no_grad():
        for parameter in parameters.values():
            parameter.add_(torch.randn_like(parameter))
    before = {name: p.detach().clone() for name, p in parameters.items()}

    penalty.step(sgd_over(parameters, lr=0.1))

    for name, lr in (("w", 0.1), ("b", 0.2)):
        gradient = 2 * 0.3 * fisher[name] * (before[name] - penalty.anchors[name])
        assert torch.allclose(parameters[name].detach(), before[name] - lr * gradient), name


def test_penalty_step_never_overshoots_anchor():
    parameters = named_parameters()
    penalty = l2sp_penalty(parameters, strength=1e6)
    with torch.no_grad():
        parameters["w"] += 1.0

    penalty.step(sgd_over(parameters, lr=0.1))

    assert torch.allclose(parameters["w"].detach(), penalty.anchors["w"])


def test_frozen_parameters_are_not_pulled():
    parameters = named_parameters()
    parameters["b"].requires_grad_(False)
    penalty = l2sp_penalty(parameters, strength=1.0)
    with torch.no_grad():
        parameters["b"] += 1.0

    penalty.step(sgd_over(parameters, lr=0.1))

    assert torch.allclose(parameters["b"], penalty.anchors["b"] + 1.0)


def test_fisher_is_mean_squared_per_example_gradient():
    torch.manual_seed(0)
    linear = nn.Linear(3, 2)
    parameters = dict(linear.named_parameters())
    rows = [(torch.randn(1, 3), None, label) for label in (0, 1, 1)]

    fisher = estimate_fisher(
        parameters,
        (nn.functional.cross_entropy(linear(x), torch.tensor([label])) for x, _, label in rows),
    )

    expected = {name: torch.zeros_like(p) for name, p in parameters.items()}
    for x, _, label in rows:
        linear.zero_grad()
        nn.functional.cross_entropy(linear(x), torch.tensor([label])).backward()
        for name, parameter in parameters.items():
            expected[name] += parameter.grad**2 / len(rows)
    for name in parameters:
        assert torch.allclose(fisher[name], expected[name], atol=1e-7), name
