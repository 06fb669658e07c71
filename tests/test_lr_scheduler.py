"""optim.CosineAnnealingLR: PyTorch's names, closed form and state_dict; resumed exactly."""

import json
import math

import numpy as np
import pytest

from tinygrad_mnist import Tensor, optim


def sgd(lr=0.1):
    return optim.SGD([Tensor(np.zeros(3, np.float32), requires_grad=True)], lr=lr)


def test_cosine_annealing_follows_the_closed_form_from_the_start_to_eta_min():
    optimizer = sgd(0.1)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=10, eta_min=0.001)
    rates = [optimizer.lr]
    for _ in range(10):
        scheduler.step()
        rates.append(optimizer.lr)
    expected = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    assert rates == expected and rates[0] == 0.1 and rates[-1] == pytest.approx(0.001)
    assert scheduler.get_last_lr() == [rates[-1]] and scheduler.last_epoch == 10


def test_a_schedule_resumed_from_its_state_dict_gives_the_same_rates_bit_for_bit():
    first, second = sgd(), sgd()
    whole = optim.CosineAnnealingLR(first, T_max=20)
    for _ in range(7):
        whole.step()
    state = json.loads(json.dumps(whole.state_dict()))  # as a checkpoint's record holds it
    resumed = optim.CosineAnnealingLR(second, T_max=20)
    resumed.load_state_dict(state)
    assert second.lr == first.lr
    for _ in range(13):
        whole.step()
        resumed.step()
        assert second.lr == first.lr


def test_cosine_annealing_matches_torch():
    torch = pytest.importorskip("torch", reason="the comparison with PyTorch needs torch")
    parameter = torch.nn.Parameter(torch.zeros(3))
    torch_optimizer = torch.optim.SGD([parameter], lr=0.05)
    torch_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(torch_optimizer, T_max=12, eta_min=0.002)
    optimizer = sgd(0.05)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=12, eta_min=0.002)
    for _ in range(12):
        assert optimizer.lr == pytest.approx(torch_optimizer.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        assert scheduler.get_last_lr() == pytest.approx(torch_scheduler.get_last_lr(), rel=1e-12, abs=1e-15)
        torch_optimizer.step()
        torch_scheduler.step()
        scheduler.step()
    assert set(scheduler.state_dict()) <= set(torch_scheduler.state_dict())  # PyTorch's names
