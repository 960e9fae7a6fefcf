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


def test_plain_bert_folder_reads_segment_ids(tiny_model_dir):
    spec = read_base_model_spec(tiny_model_dir)
    encoder = build_encoder(spec)
    input_ids = torch.tensor([[101, 2000, 102, 2001, 102]])
    mask = torch.ones_like(input_ids)
    types = torch.tensor([[0, 0, 0, 1, 1]])

    with torch.no_grad():
        changed = encoder(input_ids, mask, types)
        single = encoder(input_ids, mask)

    assert spec.segment_ids
    assert not torch.allclose(changed, single)


def test_sentence_transformers_folder_runs_pairs_as_one_segment(real_model_dir):
    # all-MiniLM-L6-v2 was fine-tuned on single texts, so token type 1 is never used.
    spec = read_base_model_spec(real_model_dir)
    encoder = build_encoder(spec)
    input_ids = torch.tensor([[101, 2040, 102, 2009, 102]])
    mask = torch.ones_like(input_ids)
    types = torch.tensor([[0, 0, 0, 1, 1]])

    with torch.no_grad():
        paired = encoder(input_ids, mask, types)
        single = encoder(input_ids, mask)

    assert not spec.segment_ids
    assert torch.equal(paired, single)
