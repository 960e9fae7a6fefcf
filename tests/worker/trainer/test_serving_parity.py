"""Every strategy's delta, served from the shared base's slots, reproduces the trained model."""

import pytest
import torch

from service.modeling.base import build_encoder, read_base_model_spec
from service.modeling.dense import build_dedicated_encoder
from service.modeling.heads import pool
from service.modeling.lora import AdapterRoute
from service.serving.cache import AdapterCache
from tests.worker.trainer.helpers import keyword_examples, make_trainer
from worker.trainer.data import pad_batch

SLOT_STRATEGIES = {
    "lora": {},
    "adapter": {"bottleneck_size": 8},
    "ia3": {"learning_rate": 0.05},
    "linear_probe": {},
    "freeze_bottom": {"frozen_blocks": 2, "svd_rank": 32},
    "gradual_unfreeze": {"epochs": 3, "svd_rank": 32, "layer_lr_decay": 1.0},
    "full": {"svd_rank": 32},
}

TEXTS = [
    "alpha excellent beta",
    "gamma awful delta omega sigma",
    "excellent",
    "sigma sigma awful alpha beta gamma delta",
]


@pytest.fixture(scope="module")
def trained(deep_tiny_model_dir):
    """Each strategy's trainer after fit, and its result, trained in fp32.

    The eval rows are the training rows, so that a later epoch improves and the best epoch,
    whose weights the delta holds, has trained encoder weights in every strategy.
    """
    rows = keyword_examples(64, 0)
    runs = {}
    for strategy, options in SLOT_STRATEGIES.items():
        trainer = make_trainer(
            deep_tiny_model_dir,
            strategy,
            rows,
            rows,
            **{"epochs": 2, "learning_rate": 0.01, "head_learning_rate": 0.01, **options},
        )
        runs[strategy] = (trainer, trainer.fit())
    return runs


def reference_logits(trainer, input_ids, attention_mask, strategy, model_dir):
    model = trainer.model.eval()
    if strategy == "full":
        # Slots cannot carry embedding changes, so the compressed delta drops them (and reports
        # how many).
        base = build_encoder(read_base_model_spec(model_dir))
        model.encoder.embeddings.load_state_dict(base.embeddings.state_dict())
    with torch.no_grad():
        return model(input_ids, attention_mask)


def test_mixed_batch_of_all_strategies_matches_training(deep_tiny_model_dir, trained):
    spec = read_base_model_spec(deep_tiny_model_dir)
    encoder = build_encoder(spec)
    cache = AdapterCache(encoder, budget_bytes=1 << 30)
    loaded = {
        strategy: cache.put(f"id-{strategy}", strategy, 1, result.delta)
        for strategy, (_, result) in trained.items()
    }
    tokenizer = trained["lora"][0].tokenizer
    token_ids = tokenizer(TEXTS, truncation=True, max_length=32)["input_ids"]
    rows = [(strategy, ids) for strategy in trained for ids in token_ids]
    input_ids, attention_mask = pad_batch([ids for _, ids in rows], tokenizer.pad_token_id)

    route = AdapterRoute.for_rows([loaded[strategy].slot for strategy, _ in rows])
    with torch.no_grad():
        hidden = encoder(input_ids, attention_mask, route=route)

    assert trained["full"][1].report["compression_dropped_tensors"] == 5
    for strategy, (trainer, result) in trained.items():
        positions = torch.tensor([i for i, (name, _) in enumerate(rows) if name == strategy])
        adapter = loaded[strategy]
        with torch.no_grad():
            pooled = pool(hidden[positions], attention_mask[positions], adapter.pooling, encoder)
            served = adapter.head(pooled)
        expected = reference_logits(
            trainer,
            input_ids[positions],
            attention_mask[positions],
            strategy,
            deep_tiny_model_dir,
        )
        assert torch.allclose(served, expected, atol=1e-4), (
            f"{strategy}: max difference {float((served - expected).abs().max()):.2e}"
        )
        assert result.delta.has_encoder_update == (strategy != "linear_probe"), strategy


def test_kept_dense_update_is_served_by_dedicated_encoder(deep_tiny_model_dir):
    trainer = make_trainer(
        deep_tiny_model_dir,
        "full",
        keyword_examples(48, 0),
        keyword_examples(16, 1),
        keep_dense=True,
        learning_rate=0.01,
    )
    result = trainer.fit()
    spec = read_base_model_spec(deep_tiny_model_dir)
    tokenizer = trainer.tokenizer
    input_ids, attention_mask = pad_batch(
        tokenizer(TEXTS, truncation=True, max_length=32)["input_ids"], tokenizer.pad_token_id
    )

    encoder = build_dedicated_encoder(spec, result.delta)
    with torch.no_grad():
        served = trainer.model.head.eval()(
            pool(encoder(input_ids, attention_mask), attention_mask, spec.pooling, encoder)
        )
        expected = trainer.model.eval()(input_ids, attention_mask)

    assert torch.allclose(served, expected, atol=1e-5)
    assert result.report["dense_memory_bytes"] == sum(
        p.numel() * p.element_size() for p in encoder.parameters()
    )
    with pytest.raises(ValueError, match="needs a dedicated encoder|dedicated"):
        AdapterCache(build_encoder(spec), budget_bytes=1 << 30).put("dense", "t", 1, result.delta)


def test_compression_reports_metrics_before_and_after(deep_tiny_model_dir, trained):
    _, result = trained["freeze_bottom"]

    assert set(result.report) >= {
        "accuracy_before_compression",
        "macro_f1_before_compression",
        "compression_relative_frobenius_error",
        "compression_rank",
    }
    assert result.report["compression_relative_frobenius_error"] < 1e-5
    assert result.metrics["accuracy"] == result.report["accuracy_before_compression"]
