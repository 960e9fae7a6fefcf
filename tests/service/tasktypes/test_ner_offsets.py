"""Words with exact character offsets in raw text, and entities in character offsets."""

import pytest

from service.tasktypes.ner_offsets import Word, entities_from_word_tags, split_words

TRICKY_TEXTS = [
    "Zoë  Saldaña visited 東京 😀 yesterday.",
    "  leading and trailing   ",
    "Ångström, naïve café—déjà vu (1999) ... done!!",
    "emoji🎉inside and 👨‍👩‍👧 family, flags 🇫🇷 too",
    "tab\tnew\nline\r\nand\u00a0no-break\u3000ideographic space",
    "mixed 李小龙 and 한국어 and ひらがな and カタカナ",
    "combining e\u0301 acute and zero\u200bwidth and soft\u00adhyphen",
    "U.S.A. $5.00 #tag @user e-mail: a_b@c.d ¿Qué? «quote»",
]


def test_words_split_at_spaces_and_punctuation():
    text = "Zoë  met 李小龙, in São Paulo 😀!"

    words = split_words(text)

    assert [word.text for word in words] == [
        "Zoë",
        "met",
        "李",
        "小",
        "龙",
        ",",
        "in",
        "São",
        "Paulo",
        "😀",
        "!",
    ]
    assert words[0] == Word("Zoë", 0, 3)
    assert words[1] == Word("met", 5, 8)
    assert words[9] == Word("😀", 27, 28)


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_word_offsets_point_into_input(text):
    for word in split_words(text):
        assert text[word.start : word.end] == word.text
        assert word.text.strip() == word.text
        assert word.text


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_words_tokenise_like_raw_text(tokenizer, text):
    words = [word.text for word in split_words(text)]

    from_words = tokenizer(words, is_split_into_words=True)["input_ids"]
    from_text = tokenizer(text)["input_ids"]

    assert from_words == from_text


def test_removed_characters_do_not_split_words():
    assert [word.text for word in split_words("zero\u200bwidth \u200b x")] == [
        "zero\u200bwidth",
        "x",
    ]
    assert split_words("") == []
    assert split_words(" \t\n ") == []


def test_entities_keep_original_characters():
    text = "  Zoë   Saldaña flew to 東京 😀 with New  York friends."
    words = split_words(text)
    tags = ["O"] * len(words)
    scores = [0.5] * len(words)
    by_text = {word.text: index for index, word in enumerate(words)}
    tags[by_text["Zoë"]], tags[by_text["Saldaña"]] = "B-PER", "I-PER"
    tags[by_text["東"]], tags[by_text["京"]] = "B-LOC", "I-LOC"
    tags[by_text["New"]], tags[by_text["York"]] = "B-LOC", "I-LOC"
    scores[by_text["Zoë"]], scores[by_text["Saldaña"]] = 0.9, 0.7

    entities = entities_from_word_tags(text, words, tags, scores)

    assert [(entity["type"], entity["text"]) for entity in entities] == [
        ("PER", "Zoë   Saldaña"),
        ("LOC", "東京"),
        ("LOC", "New  York"),
    ]
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    assert entities[0]["start"] == 2
    assert entities[0]["end"] == 15
    assert entities[0]["score"] == pytest.approx(0.8)
    assert entities[1]["score"] == pytest.approx(0.5)


def test_entity_after_emoji_offsets_in_code_points():
    text = "😀😀 Paris"
    words = split_words(text)

    entities = entities_from_word_tags(text, words, ["O", "B-LOC"], [1.0, 0.6])

    assert entities == [{"type": "LOC", "text": "Paris", "start": 3, "end": 8, "score": 0.6}]


def test_entities_stray_inside_tag_starts_entity():
    text = "Ann met Bob"
    words = split_words(text)

    entities = entities_from_word_tags(text, words, ["I-PER", "O", "I-PER"], [1.0, 1.0, 1.0])

    assert [entity["text"] for entity in entities] == ["Ann", "Bob"]


def test_entities_length_mismatch_rejected():
    words = split_words("a b")

    with pytest.raises(ValueError, match="got 2 words, 1 tags and 2 scores"):
        entities_from_word_tags("a b", words, ["O"], [1.0, 1.0])
