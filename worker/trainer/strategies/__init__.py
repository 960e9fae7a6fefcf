"""Fine-tuning strategies: which parameters train, and what goes into the delta."""

from service.hyperparameters import HYPERPARAMETER_MODELS, TrainingHyperparameters
from worker.trainer.strategies.adapter import AdapterStrategy
from worker.trainer.strategies.base import EncoderUpdate, Strategy
from worker.trainer.strategies.dense import (
    FreezeBottomStrategy,
    FullStrategy,
    GradualUnfreezeStrategy,
)
from worker.trainer.strategies.ia3 import IA3Strategy
from worker.trainer.strategies.linear_probe import LinearProbeStrategy
from worker.trainer.strategies.lora import LoraStrategy

STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        LoraStrategy,
        AdapterStrategy,
        IA3Strategy,
        LinearProbeStrategy,
        FreezeBottomStrategy,
        GradualUnfreezeStrategy,
        FullStrategy,
    )
}


def build_strategy(strategy: str, hyperparameters: TrainingHyperparameters) -> Strategy:
    """Return the strategy `strategy` configured with its validated hyperparameters."""
    cls = STRATEGY_CLASSES.get(strategy)
    if cls is None:
        raise ValueError(
            f"Strategy {strategy!r} is not supported (yet). Supported: {list(STRATEGY_CLASSES)}."
        )
    expected = HYPERPARAMETER_MODELS[strategy]
    if not isinstance(hyperparameters, expected):
        raise ValueError(
            f"Strategy {strategy!r} needs {expected.__name__}, got "
            f"{type(hyperparameters).__name__}. Parse them with parse_hyperparameters."
        )
    return cls(hyperparameters)


__all__ = ["EncoderUpdate", "Strategy", "STRATEGY_CLASSES", "build_strategy"]
