"""SQuAD JSON and JSON Lines reading, answer validation and statistics for extractive QA."""

import copy
import json

import pytest

from service.datasets import DatasetError, parse_dataset

CONTEXT_1 = "Super Bowl 50 was played at Levi's Stadium in Santa Clara."
CONTEXT_2 = "The Broncos won. The Broncos scored 24 points."
CONTEXT_3 = "Paris is the capital of France."

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {
                    "context": CONTEXT_1,
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Where was Super Bowl 50 played?",
                            "answers": [{"text": "Levi's Stadium", "answer_start": 28}],
                        },
                        {
                            "id": "q2",
                            "question": " Which city? ",
                            "answers": [
                                {"text": "Santa Clara", "answer_start": 46},
                                {"text": "Santa Clara.", "answer_start": 46},
                            ],
                        },
                    ],
                },
                {
                    "context": CONTEXT_2,
                    "qas": [
                        {
                            "id": "q3",
                            "question": "How many points?",
                            "answers": [{"text": "24", "answer_start": 36}],
                        }
                    ],
                },
            ],
        },
        {
            "title": "Paris",
            "paragraphs": [
                {
                    "context": CONTEXT_3,
                    "qas": [
                        {"id": "q4", "question": "Capital of Spain?", "answers": []},
                        {
                            "id": "q5",
                            "question": "What is Paris?",
                            "answers": [{"text": "the capital of France", "answer_start": 9}],
                        },
                    ],
                }
            ],
        },
    ],
}


def parse(content: str | dict, filename: str = "dev.json", **options):
    text = content if isinstance(content, str) else json.dumps(content)
    return parse_dataset(
        text.encode("utf-8"), filename=filename, task_type="extractive_qa", **options
    )


def squad_with(change) -> dict:
    document = copy.deepcopy(SQUAD)
    change(document)
    return document


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_squad_examples_and_stats():
    report = parse(SQUAD)

    assert report.task_type == "extractive_qa"
    assert report.format == "squad"
    assert report.num_rows == 5
    assert report.examples[0] == {
        "id": "q1",
        "question": "Where was Super Bowl 50 played?",
        "context": CONTEXT_1,
        "answers": [{"text": "Levi's Stadium", "answer_start": 28}],
        "title": "Super_Bowl_50",
    }
    assert report.examples[1]["question"] == "Which city?"
    assert len(report.examples[1]["answers"]) == 2
    assert report.labels == []
    assert report.stats == {
        "articles": 2,
        "paragraphs": 3,
        "questions": 5,
        "questions_without_answer": 1,
    }
    assert report.warnings == [
        "1 of 5 questions (20.0%) have no answer. They are kept as questions whose answer is "
        "not in the context."
    ]


def test_squad_context_kept_exactly():
    context = "  Café —  «Zoë» \U0001f600 at 10am.  "
    document = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": "x",
                                "question": "Who?",
                                "answers": [{"text": "Zoë", "answer_start": 11}],
                            }
                        ],
                    }
                ]
            }
        ]
    }

    (example,) = parse(document).examples

    assert example["context"] == context
    assert example["title"] == ""
    assert context[11:14] == "Zoë"


def test_jsonl_flat_and_list_answers():
    content = jsonl(
        {"question": "Capital?", "context": CONTEXT_3, "answer_text": "Paris", "answer_start": 0},
        {
            "id": "b",
            "title": "Paris",
            "question": "Country?",
            "context": CONTEXT_3,
            "answers": [{"text": "France", "answer_start": 24}],
        },
        {
            "question": "Which country?",
            "context": CONTEXT_3,
            "answers": {"text": ["France"], "answer_start": [24]},
        },
        {"question": "Unanswerable?", "context": CONTEXT_3},
    )

    report = parse(content, filename="qa.jsonl")

    assert report.format == "jsonl"
    assert [example["id"] for example in report.examples] == ["line-1", "b", "line-3", "line-4"]
    assert report.examples[0]["answers"] == [{"text": "Paris", "answer_start": 0}]
    assert report.examples[2]["answers"] == [{"text": "France", "answer_start": 24}]
    assert report.examples[3]["answers"] == []
    assert report.stats == {
        "articles": 1,
        "paragraphs": 1,
        "questions": 4,
        "questions_without_answer": 1,
    }


def test_long_contexts_warned_as_windowed():
    def count_tokens(texts: list[str]) -> list[int]:
        return [len(text.split()) + 2 for text in texts]

    report = parse(SQUAD, count_tokens=count_tokens, max_length=14)

    # CONTEXT_1 has 11 words; with "Where was Super Bowl 50 played?" (6 words) that is 18.
    assert report.warnings[-1].startswith("2 of 5 questions (40.0%) are longer than max_length")
    assert report.warnings[-1].endswith("so no part of a context is cut off.")


# Rejections


def test_answer_not_at_start_names_record_and_field():
    def move_answer(document):
        document["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = 30

    with pytest.raises(
        DatasetError, match="the answer text '24' is not at answer_start 30"
    ) as caught:
        parse(squad_with(move_answer))

    error = caught.value
    assert error.record == "article 1, paragraph 2, question id 'q3'"
    assert error.field == "answers[0].answer_start"
    assert error.line is None
    assert "The text occurs at offset(s) 36: set answer_start to the right one." in str(error)
    assert str(error).startswith(
        "dev.json, article 1, paragraph 2, question id 'q3', field 'answers[0].answer_start': "
    )


def test_answer_absent_from_context_rejected():
    def replace_answer(document):
        document["data"][1]["paragraphs"][0]["qas"][1]["answers"][0]["text"] = "Berlin"

    with pytest.raises(DatasetError, match="does not occur in the context") as caught:
        parse(squad_with(replace_answer))

    assert caught.value.record == "article 2, paragraph 1, question id 'q5'"
    assert caught.value.field == "answers[0].answer_start"


def test_answer_past_context_end_rejected():
    def move_answer(document):
        document["data"][0]["paragraphs"][0]["qas"][1]["answers"][1]["answer_start"] = 50

    with pytest.raises(DatasetError, match="does not fit in the context") as caught:
        parse(squad_with(move_answer))

    assert caught.value.record == "article 1, paragraph 1, question id 'q2'"
    assert caught.value.field == "answers[1].answer_start"


@pytest.mark.parametrize(
    ("value", "message"),
    [("12", "found a JSON string"), (1.5, "found a JSON number"), (True, "boolean")],
)
def test_answer_start_not_integer_rejected(value, message):
    def set_start(document):
        document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = value

    with pytest.raises(DatasetError, match=message) as caught:
        parse(squad_with(set_start))

    assert caught.value.field == "answers[0].answer_start"


def test_empty_answer_text_rejected():
    def empty(document):
        document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = " "

    with pytest.raises(DatasetError, match="the answer text must be a non-blank string") as caught:
        parse(squad_with(empty))

    assert caught.value.field == "answers[0].text"


def test_empty_context_rejected():
    def empty(document):
        document["data"][1]["paragraphs"][0]["context"] = "  \n "

    with pytest.raises(DatasetError, match="the context is empty") as caught:
        parse(squad_with(empty))

    assert caught.value.record == "article 2, paragraph 1, question id 'q4'"
    assert caught.value.field == "context"


def test_empty_question_rejected():
    def empty(document):
        document["data"][0]["paragraphs"][1]["qas"][0]["question"] = ""

    with pytest.raises(DatasetError, match="the question is empty") as caught:
        parse(squad_with(empty))

    assert caught.value.record == "article 1, paragraph 2, question id 'q3'"
    assert caught.value.field == "question"


def test_duplicate_ids_rejected():
    def duplicate(document):
        document["data"][1]["paragraphs"][0]["qas"][1]["id"] = "q1"

    with pytest.raises(DatasetError, match="the question id 'q1' occurs more than once") as caught:
        parse(squad_with(duplicate))

    assert caught.value.field == "id"


def test_missing_paragraphs_rejected():
    def drop(document):
        del document["data"][1]["paragraphs"]

    with pytest.raises(
        DatasetError, match="needs the key 'paragraphs' with a JSON array, but it is missing"
    ) as caught:
        parse(squad_with(drop))

    assert caught.value.record == "article 2"
    assert caught.value.field == "paragraphs"


def test_not_squad_document_rejected():
    with pytest.raises(DatasetError, match="needs the key 'data'") as caught:
        parse({"questions": []})

    assert caught.value.field == "data"


def test_invalid_json_names_line():
    with pytest.raises(DatasetError, match="invalid JSON at column") as caught:
        parse('{"data": [\n  {"title": "x",\n  }\n]}')

    assert caught.value.line == 3


def test_jsonl_answer_mismatch_names_line():
    content = jsonl(
        {"question": "Capital?", "context": CONTEXT_3, "answer_text": "Paris", "answer_start": 0},
        {"question": "Country?", "context": CONTEXT_3, "answer_text": "France", "answer_start": 20},
    )

    with pytest.raises(DatasetError, match="not at answer_start 20") as caught:
        parse(content, filename="qa.jsonl")

    assert caught.value.line == 2
    assert caught.value.record is None
    assert caught.value.field == "answer_start"


def test_jsonl_empty_context_names_line():
    content = jsonl({"question": "Capital?", "context": "", "answers": []})

    with pytest.raises(DatasetError, match="the context is empty") as caught:
        parse(content, filename="qa.jsonl")

    assert caught.value.line == 1
    assert caught.value.field == "context"


def test_jsonl_columnar_answers_length_mismatch_rejected():
    content = jsonl(
        {"question": "Q?", "context": CONTEXT_3, "answers": {"text": ["Paris"], "answer_start": []}}
    )

    with pytest.raises(DatasetError, match="two JSON arrays of the same length") as caught:
        parse(content, filename="qa.jsonl")

    assert caught.value.field == "answers"


def test_column_mapping_rejected():
    with pytest.raises(
        DatasetError, match="text_column is not used by task type 'extractive_qa'"
    ) as caught:
        parse(SQUAD, text_column="question")

    assert caught.value.field == "text_column"


def test_no_questions_rejected():
    with pytest.raises(DatasetError, match="the file contains no questions"):
        parse({"data": [{"title": "t", "paragraphs": []}]})
