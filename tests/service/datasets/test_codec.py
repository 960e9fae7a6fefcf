import pytest

from service.datasets import decode_examples, encode_examples, find_overlap, normalise_text


def test_encode_examples_compact_json_lines():
    content = encode_examples([{"text": "a b", "label": "1"}, {"text": "c", "label": "0"}])

    assert content == b'{"text":"a b","label":"1"}\n{"text":"c","label":"0"}\n'


def test_codec_round_trip_keeps_unicode():
    examples = [
        {"text": "clichés \u2028 line separator", "label": "pos"},
        {"text": 'quote " and\nnewline \U0001f600', "label": "neg"},
    ]

    content = encode_examples(examples)

    assert "clichés".encode() in content  # stored as raw UTF-8, not \u escapes
    assert content.count(b"\n") == 2
    assert decode_examples(content) == examples


def test_codec_round_trip_empty_list():
    assert encode_examples([]) == b""
    assert decode_examples(b"") == []


def test_decode_examples_corrupt_line():
    with pytest.raises(ValueError, match="corrupt at line 2"):
        decode_examples(b'{"text":"a","label":"1"}\n{"text":\n')


def test_decode_examples_non_object_line():
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        decode_examples(b'["a", "1"]\n')


def test_normalise_text_folds_case_and_whitespace():
    assert normalise_text("  Hello\t\tWORLD \n") == "hello world"
    assert normalise_text("Straße") == normalise_text("STRASSE")


def test_find_overlap_counts_eval_examples():
    train = [{"text": "A good film", "label": "1"}, {"text": "bad", "label": "0"}]
    eval_examples = [
        {"text": "a  GOOD film ", "label": "1"},
        {"text": "a good film", "label": "0"},
        {"text": "unseen", "label": "1"},
    ]

    assert find_overlap(train, eval_examples) == 2


def test_find_overlap_empty_splits():
    assert find_overlap([], [{"text": "a", "label": "1"}]) == 0
    assert find_overlap([{"text": "a", "label": "1"}], []) == 0
