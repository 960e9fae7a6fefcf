"""Serving of every task type: input forms, encoding, decoding and the engine's full path."""

import pytest
import torch

from service.modeling.delta import Delta
from service.serving.batcher import estimate_tokens
from service.serving.tasktypes import SERVING_TASK_TYPES, get_serving_task_type
from service.serving.tasktypes.extractive_qa import ExtractiveQA
from service.serving.tasktypes.token_classification import TokenClassification
from service.tasktypes.encoding import encode_texts
from service.tasktypes.ner_offsets import split_words
from tests.service.serving.utils import register_delta

TAGS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


def typed_delta(
    engine,
    task_type: str,
    labels: list[str],
    num_outputs: int | None = None,
    extra: dict[str, str] | None = None,
    seed: int = 0,
    max_length: int = 32,
) -> Delta:
    """Return a head-only delta of `task_type` with random head weights."""
    generator = torch.Generator().manual_seed(seed)
    outputs = len(labels) if num_outputs is None else num_outputs
    hidden = engine.base.encoder.config.hidden_size
    head = {
        "classifier.weight": torch.randn(outputs, hidden, generator=generator),
        "classifier.bias": torch.zeros(outputs),
    }
    return Delta(
        "linear_probe",
        task_type,
        labels,
        engine.base.fingerprint,
        "mean",
        max_length,
        head=head,
        extra=extra or {},
    )


def loaded_adapter(engine, session, name: str, delta: Delta):
    register_delta(session, name, delta)
    loaded = engine.acquire(session, name)
    engine.release(loaded)
    return loaded


def test_every_dataset_task_type_is_servable():
    assert set(SERVING_TASK_TYPES) == {
        "text_classification",
        "sentence_pair",
        "multi_label",
        "regression",
        "token_classification",
        "extractive_qa",
    }


@pytest.mark.parametrize(
    ("task_type", "item", "message"),
    [
        ("sentence_pair", "just one text", "text_pair"),
        ("sentence_pair", {"text": "a", "text_pair": " "}, '"text_pair" must be a non-empty'),
        ("multi_label", {"text": "a", "labels": []}, "non-empty string"),
        ("regression", {"text": "a", "text_pair": 3}, '"text_pair" must be a non-empty'),
        ("token_classification", {"tokens": []}, "non-empty list"),
        ("token_classification", {"tokens": ["a", ""]}, "every token"),
        ("token_classification", 12, "each input must be"),
        ("extractive_qa", {"question": "who?"}, "question"),
        ("extractive_qa", "who?", "context"),
    ],
)
def test_invalid_input_rejected(task_type, item, message):
    with pytest.raises(ValueError, match=message):
        get_serving_task_type(task_type).parse_input(item)


@pytest.mark.parametrize(
    ("task_type", "item"),
    [
        ("text_classification", "a text"),
        ("sentence_pair", {"text": "a text", "text_pair": "another"}),
        ("multi_label", {"text": "a text"}),
        ("regression", {"text": "a text", "text_pair": "another"}),
        ("token_classification", "Angela visited Paris"),
        ("token_classification", {"tokens": ["Angela", "visited", "Paris"]}),
        ("extractive_qa", {"question": "Who?", "context": "Angela visited Paris."}),
    ],
)
def test_parsed_inputs_measurable_by_batcher(task_type, item):
    parsed = get_serving_task_type(task_type).parse_input(item)

    assert 0 < estimate_tokens(parsed, max_length=128) < 20


def test_sentence_pair_predicts_label_of_pair(engine, session):
    delta = typed_delta(engine, "sentence_pair", ["0", "1"])
    register_delta(session, "paraphrase", delta)
    pairs = [
        {"text": "The cat sat.", "text_pair": "A cat was sitting."},
        {"text": "The cat sat.", "text_pair": "Stocks fell sharply."},
    ]

    result = engine.predict(session, "paraphrase", pairs)

    assert [set(p["scores"]) for p in result.predictions] == [{"0", "1"}] * 2
    assert all(p["label"] == max(p["scores"], key=p["scores"].get) for p in result.predictions)


def test_sentence_pair_encodes_segments_like_trainer(engine, session):
    loaded = loaded_adapter(engine, session, "pair", typed_delta(engine, "sentence_pair", ["0"]))
    item = {"text": "first text " * 20, "text_pair": "second text"}
    task_type = get_serving_task_type("sentence_pair")

    encoded, _ = task_type.encode(engine.base.tokenizer, [(loaded, item)])

    input_ids, token_type_ids = encode_texts(
        engine.base.tokenizer, [item["text"]], [item["text_pair"]], max_length=32
    )
    assert encoded[0].input_ids == input_ids[0]
    assert encoded[0].token_type_ids == token_type_ids[0]
    assert len(encoded[0].input_ids) == 32
    assert set(encoded[0].token_type_ids) == {0, 1}


@pytest.mark.parametrize(("threshold", "expected"), [("0.0", ["a", "b", "c"]), ("1.0", [])])
def test_multi_label_uses_stored_threshold(engine, session, threshold, expected):
    delta = typed_delta(engine, "multi_label", ["a", "b", "c"], extra={"threshold": threshold})
    register_delta(session, "topics", delta)

    result = engine.predict(session, "topics", ["news about sports and politics"])

    prediction = result.predictions[0]
    assert prediction["labels"] == expected
    assert set(prediction["scores"]) == {"a", "b", "c"}
    assert all(0.0 < score < 1.0 for score in prediction["scores"].values())


def test_multi_label_default_threshold_is_half(engine, session):
    register_delta(session, "topics", typed_delta(engine, "multi_label", ["a", "b", "c", "d"]))

    prediction = engine.predict(session, "topics", ["some text"]).predictions[0]

    assert prediction["labels"] == [label for label, p in prediction["scores"].items() if p >= 0.5]


def test_regression_maps_back_to_target_units(engine, session):
    plain = typed_delta(engine, "regression", [], num_outputs=1, extra={"text_pair": "false"})
    scaled = typed_delta(
        engine,
        "regression",
        [],
        num_outputs=1,
        extra={"text_pair": "false", "target_mean": "10.0", "target_std": "2.0"},
    )
    register_delta(session, "plain", plain)
    register_delta(session, "scaled", scaled)

    raw = engine.predict(session, "plain", ["a text"]).predictions[0]["value"]
    value = engine.predict(session, "scaled", ["a text"]).predictions[0]["value"]

    assert value == pytest.approx(raw * 2.0 + 10.0, rel=1e-5)


def test_regression_rejects_input_of_other_form(engine, session):
    pairs = loaded_adapter(
        engine,
        session,
        "similarity",
        typed_delta(engine, "regression", [], num_outputs=1, extra={"text_pair": "true"}),
    )
    singles = loaded_adapter(
        engine,
        session,
        "rating",
        typed_delta(engine, "regression", [], num_outputs=1, extra={"text_pair": "false"}),
    )
    task_type = get_serving_task_type("regression")

    with pytest.raises(ValueError, match="trained on text pairs"):
        task_type.parse_input_for(pairs, "one text")
    with pytest.raises(ValueError, match="trained on single texts"):
        task_type.parse_input_for(singles, {"text": "a", "text_pair": "b"})
    assert task_type.parse_input_for(pairs, {"text": "a", "text_pair": "b"})["text_pair"] == "b"


NER_TEXTS = [
    "Angela Merkel visited Paris.",
    "  Zoë   Ångström 😀 met   José in São Paulo  ",
    "東京で山田さんに会った",
    "tab\tseparated\nlines\r\nand\u200bzero width",
]


@pytest.mark.parametrize("text", NER_TEXTS)
def test_entities_are_exact_substrings(engine, session, text):
    # Every tag is likely somewhere, because the random head is scaled up.
    delta = typed_delta(engine, "token_classification", TAGS, seed=3)
    delta.head["classifier.weight"] *= 10
    register_delta(session, "ner", delta)

    prediction = engine.predict(session, "ner", [text]).predictions[0]

    assert prediction["entities"], "the random head should find some entity"
    for entity in prediction["entities"]:
        assert entity["text"] == text[entity["start"] : entity["end"]]
        assert entity["text"] == entity["text"].strip()
        assert entity["type"] in {"LOC", "PER"}
        assert 0.0 < entity["score"] <= 1.0


def outputs_tagging(encoded, plan, words_by_row, tag_of_word):
    """Return head outputs that give each word `tag_of_word(word_index)` on its first sub-token."""
    outputs = []
    for index, encoded_row in enumerate(encoded):
        row = encoded_row.item
        window = plan.windows[row][index - plan.first_row[row]]
        logits = torch.zeros(len(encoded_row.input_ids), len(TAGS))
        for position, word in enumerate(window.word_ids):
            if word is not None:
                logits[position, tag_of_word(words_by_row[row][word])] = 5.0
        outputs.append(logits)
    return outputs


def test_long_text_tagged_across_windows(engine, session):
    loaded = loaded_adapter(
        engine, session, "ner", typed_delta(engine, "token_classification", TAGS, max_length=16)
    )
    words = [f"w{index}" if index % 7 else "Paris" for index in range(60)]
    text = " ".join(words)
    task_type = TokenClassification()
    item = task_type.parse_input(text)

    encoded, plan = task_type.encode(engine.base.tokenizer, [(loaded, item)])
    words = [w.text for w in plan.inputs[0].words]
    outputs = outputs_tagging(encoded, plan, [words], lambda word: 1 if word == "Paris" else 0)
    prediction = task_type.decode([(loaded, item)], encoded, plan, outputs)[0]

    assert len(plan.windows[0]) > 3
    assert all(len(row.input_ids) <= 16 for row in encoded)
    paris = [(e["start"], e["end"]) for e in prediction["entities"]]
    expected = [(w.start, w.end) for w in split_words(text) if w.text == "Paris"]
    assert paris == expected
    assert {e["type"] for e in prediction["entities"]} == {"LOC"}


def test_tokens_input_returns_tags_per_token(engine, session):
    loaded = loaded_adapter(
        engine, session, "ner", typed_delta(engine, "token_classification", TAGS)
    )
    tokens = ["U.N.", "official", "Ekeus", "heads", "for", "Baghdad", "."]
    task_type = TokenClassification()
    item = task_type.parse_input({"tokens": tokens})
    tags = {"Ekeus": 2, "Baghdad": 1}

    encoded, plan = task_type.encode(engine.base.tokenizer, [(loaded, item)])
    outputs = outputs_tagging(encoded, plan, [tokens], lambda word: tags.get(word, 0))
    prediction = task_type.decode([(loaded, item)], encoded, plan, outputs)[0]

    assert prediction["tags"] == ["O", "O", "B-PER", "O", "O", "B-LOC", "O"]
    joined = " ".join(tokens)
    assert [(e["text"], e["type"]) for e in prediction["entities"]] == [
        ("Ekeus", "PER"),
        ("Baghdad", "LOC"),
    ]
    assert all(joined[e["start"] : e["end"]] == e["text"] for e in prediction["entities"])


def qa_adapter(engine, session, max_length=32, stride=8, question_tokens=8):
    extra = {
        "doc_stride": str(stride),
        "max_question_tokens": str(question_tokens),
        "max_answer_tokens": "5",
    }
    delta = typed_delta(
        engine, "extractive_qa", [], num_outputs=2, extra=extra, max_length=max_length
    )
    return loaded_adapter(engine, session, "qa", delta)


def test_answer_found_in_later_window(engine, session):
    loaded = qa_adapter(engine, session)
    filler = " ".join(f"word{index}" for index in range(40))
    context = f"{filler} The capital is  Ulaanbaatar, in Mongolia. {filler}"
    item = {"question": "What is the capital?", "context": context}
    task_type = ExtractiveQA()

    encoded, plan = task_type.encode(engine.base.tokenizer, [(loaded, item)])
    answer_start = context.index("Ulaanbaatar")
    outputs = []
    for index, window in plan[0]:
        logits = torch.zeros(len(encoded[index].input_ids), 2)
        for position, offset in enumerate(window.offsets):
            if offset is not None and offset[0] == answer_start:
                logits[position, 0] = 8.0
            if offset is not None and offset[1] == answer_start + len("Ulaanbaatar"):
                logits[position, 1] = 8.0
        outputs.append(logits)
    prediction = task_type.decode([(loaded, item)], encoded, plan, outputs)[0]

    assert len(plan[0]) > 2
    assert prediction["answer"] == "Ulaanbaatar"
    assert prediction["answer"] == context[prediction["start"] : prediction["end"]]
    assert 0.0 < prediction["score"] <= 1.0


def test_qa_engine_answers_are_context_spans(engine, session):
    qa_adapter(engine, session)
    contexts = [
        "Zoë  Ångström was born in São Paulo 😀 in 1901, and moved to 東京 later.",
        " ".join(f"token{index}" for index in range(80)),
    ]
    inputs = [{"question": "Who was born?", "context": context} for context in contexts]

    predictions = engine.predict(session, "qa", inputs).predictions

    for item, prediction in zip(inputs, predictions, strict=True):
        assert set(prediction) == {"answer", "start", "end", "score"}
        assert prediction["answer"] == item["context"][prediction["start"] : prediction["end"]]
        assert prediction["answer"]


def test_mixed_task_types_share_one_batch(engine, session):
    held = [
        loaded_adapter(engine, session, "tc", typed_delta(engine, "text_classification", ["a"])),
        loaded_adapter(engine, session, "ner", typed_delta(engine, "token_classification", TAGS)),
        qa_adapter(engine, session),
    ]
    items = [
        (held[0], "plain text"),
        (held[1], TokenClassification().parse_input("Angela visited Paris")),
        (held[2], {"question": "Where?", "context": "Angela visited Paris."}),
        (held[0], "another text"),
    ]

    predictions = engine.run_items(items)

    assert [set(p) for p in predictions] == [
        {"label", "scores"},
        {"entities"},
        {"answer", "start", "end", "score"},
        {"label", "scores"},
    ]
