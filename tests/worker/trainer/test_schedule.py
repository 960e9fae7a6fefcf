"""Learning-rate multipliers at chosen steps of each schedule."""

import math

import pytest

from tests.worker.trainer.helpers import keyword_examples, make_trainer
from worker.trainer.callbacks import TrainerCallback
from worker.trainer.schedule import build_schedule, resolve_warmup_steps


def test_linear_schedule():
    multiplier = build_schedule("linear", total_steps=100, warmup_steps=9)

    assert multiplier(0) == pytest.approx(0.1)
    assert multiplier(8) == pytest.approx(0.9)
    assert multiplier(9) == 1.0
    assert multiplier(54) == pytest.approx(46 / 91)
    assert multiplier(100) == 0.0


def test_cosine_schedule():
    multiplier = build_schedule("cosine", total_steps=110, warmup_steps=10)

    assert multiplier(4) == pytest.approx(5 / 11)
    assert multiplier(10) == pytest.approx(1.0)
    assert multiplier(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert multiplier(60) == pytest.approx(0.5)
    assert multiplier(110) == pytest.approx(0.0)


def test_constant_schedule():
    multiplier = build_schedule("constant", total_steps=50, warmup_steps=4)

    assert multiplier(1) == pytest.approx(0.4)
    assert multiplier(4) == 1.0
    assert multiplier(49) == 1.0


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'step'"):
        build_schedule("step", 10, 1)


def test_warmup_steps_override_ratio():
    assert resolve_warmup_steps(200, warmup_ratio=0.06, warmup_steps=None) == 12
    assert resolve_warmup_steps(200, warmup_ratio=0.06, warmup_steps=30) == 30
    assert resolve_warmup_steps(20, warmup_ratio=0.06, warmup_steps=30) == 20


class Rates(TrainerCallback):
    def __init__(self):
        self.rates = {}

    def on_log(self, state):
        self.rates[state.step] = state.learning_rate


def test_trainer_follows_the_schedule(tiny_model_dir):
    rates = Rates()
    trainer = make_trainer(
        tiny_model_dir,
        "lora",
        keyword_examples(64, 0),
        keyword_examples(8, 1),
        callbacks=[rates],
        epochs=2,
        batch_size=8,
        learning_rate=1e-3,
        warmup_steps=3,
        lr_schedule="cosine",
    )
    trainer.fit()

    # 16 steps; the rate logged after step s is the one the next step uses, multiplier(s).
    multiplier = build_schedule("cosine", total_steps=16, warmup_steps=3)
    for step, rate in rates.rates.items():
        assert rate == pytest.approx(1e-3 * multiplier(step)), f"step {step}"
