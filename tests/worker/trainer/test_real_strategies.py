"""Every strategy on the real base and real SST-2 rows beats the majority class."""

import random

import pytest

from service.hyperparameters import parse_hyperparameters
from service.modeling.base import fingerprint_base_model, load_tokenizer, read_base_model_spec
from tests.worker.trainer.helpers import read_sst2
from worker.trainer.loop import Trainer

pytestmark = pytest.mark.real_model

# Few rows and epochs keep each run to seconds on 2 cores. The margin over the majority class
# is below what these rows reach on all-MiniLM-L6-v2, leaving room for other seeds.
STRATEGIES = {
    "lora": {},
    "adapter": {},
    "ia3": {},
    "linear_probe": {},
    "freeze_bottom": {},
    "gradual_unfreeze": {"epochs": 3},
    "full": {},
}


@pytest.fixture(scope="module")
def sst2(shared_data_dir):
    train = random.Random(0).sample(read_sst2(shared_data_dir / "sst2" / "train.tsv"), 320)
    dev = read_sst2(shared_data_dir / "sst2" / "dev.tsv")[:200]
    return train, dev


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_beats_majority_on_sst2(real_model_dir, sst2, strategy):
    train, dev = sst2
    majority = max(sum(e["label"] == label for e in dev) for label in ("0", "1")) / len(dev)
    values = {"epochs": 2, "max_length": 64, **STRATEGIES[strategy]}
    trainer = Trainer(
        spec=read_base_model_spec(real_model_dir),
        tokenizer=load_tokenizer(real_model_dir),
        fingerprint=fingerprint_base_model(real_model_dir),
        strategy=strategy,
        hyperparameters=parse_hyperparameters(strategy, values),
        train_examples=train,
        eval_examples=dev,
        labels=["0", "1"],
    )

    result = trainer.fit()

    assert result.metrics["accuracy"] > majority + 0.05, trainer.state.eval_history
