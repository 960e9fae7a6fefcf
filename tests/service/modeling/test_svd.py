"""Truncated-SVD compression of dense updates."""

import math

import pytest
import torch

from service.modeling.svd import compress_dense_update, low_rank_factors


def rank_k_update(out_features, in_features, rank, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out_features, rank, generator=generator) @ torch.randn(
        rank, in_features, generator=generator
    )


def test_exact_when_rank_covers_true_rank():
    update = rank_k_update(12, 20, rank=3)

    lora_A, lora_B, squared_error = low_rank_factors(update, rank=3)

    assert lora_A.shape == (3, 20)
    assert lora_B.shape == (12, 3)
    assert torch.allclose(lora_B @ lora_A, update, atol=1e-4)
    assert squared_error < 1e-8 * float(update.pow(2).sum())


def test_error_is_the_dropped_singular_values():
    update = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    singular_values = torch.linalg.svdvals(update.double())

    lora_A, lora_B, squared_error = low_rank_factors(update, rank=5)

    assert squared_error == pytest.approx(float((singular_values[5:] ** 2).sum()), rel=1e-9)
    residual = float((update - lora_B @ lora_A).double().pow(2).sum())
    assert residual == pytest.approx(squared_error, rel=1e-4)


def test_rank_above_matrix_rank_keeps_all():
    update = torch.randn(4, 6)

    lora_A, lora_B, squared_error = low_rank_factors(update, rank=32)

    assert lora_A.shape == (4, 6)
    assert squared_error == 0.0


def test_update_is_split_by_kind():
    base = {
        "encoder.layer.0.attention.self.query.weight": torch.zeros(6, 6),
        "encoder.layer.0.attention.self.query.bias": torch.zeros(6),
        "encoder.layer.0.output.LayerNorm.weight": torch.ones(6),
        "encoder.layer.0.output.LayerNorm.bias": torch.zeros(6),
        "encoder.layer.0.output.dense.weight": torch.zeros(6, 8),
        "embeddings.word_embeddings.weight": torch.zeros(10, 6),
    }
    trained = {name: tensor.clone() for name, tensor in base.items()}
    trained["encoder.layer.0.attention.self.query.weight"] += rank_k_update(6, 6, rank=2)
    trained["encoder.layer.0.attention.self.query.bias"] += 0.5
    trained["encoder.layer.0.output.LayerNorm.weight"] += 0.25
    trained["embeddings.word_embeddings.weight"][3] += 1.0
    paths = {"encoder.layer.0.attention.self.query", "encoder.layer.0.output.dense"}

    compressed = compress_dense_update(trained, base, paths, rank=2)

    # The unchanged output projection gets no entry.
    assert set(compressed.lora) == {"encoder.layer.0.attention.self.query"}
    assert compressed.relative_error < 1e-5
    assert torch.equal(
        compressed.bias["encoder.layer.0.attention.self.query"], torch.full((6,), 0.5)
    )
    weight_change, bias_change = compressed.layer_norm["encoder.layer.0.output.LayerNorm"]
    assert torch.equal(weight_change, torch.full((6,), 0.25))
    assert torch.equal(bias_change, torch.zeros(6))
    assert compressed.dropped == {"embeddings.word_embeddings.weight": pytest.approx(math.sqrt(6))}
    assert 0 < compressed.dropped_fraction < 1


def test_relative_error_over_all_matrices():
    base = {"a.weight": torch.zeros(8, 8), "b.weight": torch.zeros(8, 8)}
    trained = {"a.weight": torch.randn(8, 8), "b.weight": rank_k_update(8, 8, rank=1)}

    compressed = compress_dense_update(trained, base, {"a", "b"}, rank=1)

    dropped = float((torch.linalg.svdvals(trained["a.weight"].double())[1:] ** 2).sum())
    total = sum(float(t.double().pow(2).sum()) for t in trained.values())
    assert compressed.relative_error == pytest.approx(math.sqrt(dropped / total), rel=1e-6)
