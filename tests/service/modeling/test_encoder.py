import torch
from transformers import BertModel

from service.modeling.base import build_encoder, fingerprint_base_model, read_base_model_spec


def test_encoder_matches_transformers_bert(tiny_model_dir):
    spec = read_base_model_spec(tiny_model_dir)
    encoder = build_encoder(spec)
    reference = BertModel.from_pretrained(tiny_model_dir).eval()
    input_ids = torch.tensor([[101, 7592, 2088, 102, 0, 0], [101, 2023, 2003, 1037, 3231, 102]])
    attention_mask = (input_ids != 0).long()

    with torch.no_grad():
        ours = encoder(input_ids, attention_mask)
        theirs = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    real = attention_mask.bool()
    assert torch.allclose(ours[real], theirs[real], atol=1e-5)


def test_encoder_weights_are_frozen(tiny_model_dir):
    encoder = build_encoder(read_base_model_spec(tiny_model_dir))

    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.training


def test_plain_bert_folder_uses_cls_pooler(tiny_model_dir):
    spec = read_base_model_spec(tiny_model_dir)

    assert spec.pooling == "cls_pooler"
    assert spec.has_pooler


def test_fingerprint_is_stable(tiny_model_dir):
    assert fingerprint_base_model(tiny_model_dir) == fingerprint_base_model(tiny_model_dir)
    assert len(fingerprint_base_model(tiny_model_dir)) == 64
