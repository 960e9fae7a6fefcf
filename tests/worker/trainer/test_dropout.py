"""The trainer's CPU dropout and the explicit attention path it switches on."""

import torch

from service.modeling.base import build_encoder, read_base_model_spec
from worker.trainer.dropout import FastDropout, dropout_mask, use_fast_dropout


def test_mask_keeps_one_minus_p():
    torch.manual_seed(0)

    keep = dropout_mask(torch.Size([1000, 1000]), 0.1, torch.device("cpu"))

    assert abs(float(keep.float().mean()) - 0.9) < 2e-3


def test_dropout_scales_kept_values_and_their_gradient():
    torch.manual_seed(0)
    x = torch.randn(200, 50, requires_grad=True)

    y = FastDropout(0.2).train()(x)
    y.sum().backward()

    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.8)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.8))
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))


def test_dropout_is_identity_in_eval_mode():
    x = torch.randn(4, 5)

    assert torch.equal(FastDropout(0.5).eval()(x), x)


def test_explicit_attention_matches_fused_kernel(tiny_model_dir):
    encoder = build_encoder(read_base_model_spec(tiny_model_dir))
    # No randomness, so that only the attention path differs between the two runs.
    for block in encoder.encoder.layer:
        block.attention.self.dropout_p = 0.0
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    input_ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 2307, 102, 0, 0]])
    mask = (input_ids != 0).long()
    with torch.no_grad():
        fused = encoder.train()(input_ids, mask)

    replaced = use_fast_dropout(encoder, encoder)
    for module in encoder.modules():
        if isinstance(module, FastDropout):
            module.p = 0.0
    with torch.no_grad():
        explicit = encoder.train()(input_ids, mask)

    assert replaced == 3 * 2 + 1  # two blocks of (attention, two outputs), plus embeddings
    assert torch.allclose(explicit, fused, atol=1e-5)
