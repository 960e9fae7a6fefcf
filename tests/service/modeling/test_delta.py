import pytest
import torch

from service.modeling.delta import Delta, DeltaFormatError, deserialize_delta, serialize_delta


def test_delta_round_trip_keeps_tensors_and_metadata():
    delta = Delta(
        strategy="lora",
        task_type="text_classification",
        labels=["neg", "pos"],
        base_fingerprint="ab" * 32,
        pooling="mean",
        max_length=64,
        lora_scale=2.0,
        lora={"encoder.layer.0.attention.self.query": (torch.randn(4, 8), torch.randn(8, 4))},
        head={"classifier.weight": torch.randn(2, 8), "classifier.bias": torch.randn(2)},
    )

    restored = deserialize_delta(serialize_delta(delta))

    assert restored.labels == ["neg", "pos"]
    assert restored.lora_scale == 2.0
    assert restored.max_length == 64
    assert restored.base_fingerprint == delta.base_fingerprint
    lora_A, lora_B = restored.lora["encoder.layer.0.attention.self.query"]
    assert torch.equal(lora_A, delta.lora["encoder.layer.0.attention.self.query"][0])
    assert torch.equal(lora_B, delta.lora["encoder.layer.0.attention.self.query"][1])
    assert torch.equal(restored.head["classifier.bias"], delta.head["classifier.bias"])


def test_delta_rejects_garbage_bytes():
    with pytest.raises(DeltaFormatError, match="not a readable safetensors file"):
        deserialize_delta(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
