"""Task type "extractive_qa": questions answered by a span of a context.

Each example is one question, normalised to
{"id": str, "question": str, "context": str, "answers": [{"text": str, "answer_start": int}],
"title": str}. The context is kept exactly as given, because answer_start is a character
offset into it, and every answer must satisfy
context[answer_start : answer_start + len(text)] == text. A question may have no answer
(answers == []), as in SQuAD v2. Two formats are read:

- SQuAD JSON ("squad", extension .json), as in SQuAD v1.1 and v2.0:
  {"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers":
  [{"text", "answer_start"}]}]}]}]}. Errors name the record: "article 3, paragraph 2,
  question id 'q7'", articles and paragraphs counted from 1.
- JSON Lines, one question per line with "question" and "context", optional "id" and
  "title", and the answers as either "answers" (SQuAD's list of objects, or the Hugging Face
  datasets form {"text": [...], "answer_start": [...]}) or "answer_text" and
  "answer_start". Errors name the line.

A missing id becomes "line-N" (JSON Lines) or "aNpNqN" (article, paragraph and question
numbers). Ids must be unique. Offsets count Unicode code points, as Python and JSON do.
The report has no labels, and its stats hold the "articles" (distinct non-empty titles for
JSON Lines), "paragraphs" (distinct contexts), "questions" and "questions_without_answer".
"""

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from service.datasets.codec import DatasetReport
from service.datasets.errors import DatasetError
from service.datasets.formats import (
    decode_text,
    given,
    iter_jsonl_objects,
    json_type_name,
    percent,
    preview_value,
    read_text,
)

TASK_TYPE = "extractive_qa"
FORMATS = ("squad", "jsonl")

_OFFSETS_SHOWN = 3


@dataclass(frozen=True)
class Location:
    """Location of a question in the file, for error messages: a JSON Lines line or a record."""

    filename: str
    line: int | None = None
    record: str | None = None

    def error(self, message: str, field: str | None = None) -> DatasetError:
        return DatasetError(
            message, filename=self.filename, line=self.line, field=field, record=self.record
        )


def parse(
    data: bytes,
    *,
    filename: str,
    format: str,
    columns: Mapping[str, str | None],
    count_tokens: Callable[[list[str]], list[int]] | None,
    max_length: int,
) -> DatasetReport:
    """Read and validate a whole file. Raise DatasetError at the first invalid question."""
    _reject_column_mapping(columns, filename=filename)
    text = decode_text(data, filename=filename)
    if format == "squad":
        examples, articles = _read_squad(text, filename=filename)
    else:
        examples = list(_read_jsonl(text, filename=filename))
        articles = len({example["title"] for example in examples if example["title"]})
    if not examples:
        raise DatasetError("the file contains no questions.", filename=filename)
    _check_unique_ids(examples, filename=filename)

    without_answer = sum(1 for example in examples if not example["answers"])
    warnings = _no_answer_warnings(without_answer, len(examples))
    if count_tokens is not None:
        warnings.extend(_length_warnings(examples, count_tokens, max_length))

    return DatasetReport(
        task_type=TASK_TYPE,
        format=format,
        examples=examples,
        labels=[],
        label_counts={},
        warnings=warnings,
        num_rows=len(examples),
        stats={
            "articles": articles,
            "paragraphs": len({example["context"] for example in examples}),
            "questions": len(examples),
            "questions_without_answer": without_answer,
        },
    )


def build_example(
    record: Mapping[str, Any],
    *,
    context: Any,
    title: Any,
    default_id: str,
    location: Location,
) -> dict[str, Any]:
    """Validate one question and return its normalised example.

    Args:
        record: the question's JSON object (a SQuAD "qas" item or a JSON Lines object).
        context: the context's raw JSON value.
        title: the article title's raw JSON value, or None.
        default_id: the id used when the record has none.
        location: where the question is, for messages.
    """
    question_id = _read_id(record.get("id"), default_id, location)
    location = _with_question_id(location, question_id)
    question = read_text(
        record.get("question"),
        name="question",
        filename=location.filename,
        line=location.line,
        field="question",
        record=location.record,
    )
    context_text = read_text(
        context,
        name="context",
        filename=location.filename,
        line=location.line,
        field="context",
        record=location.record,
        strip=False,
    )
    answers = _read_answers(record, context_text, location)
    return {
        "id": question_id,
        "question": question,
        "context": context_text,
        "answers": answers,
        "title": _read_title(title, location),
    }


def _reject_column_mapping(columns: Mapping[str, str | None], *, filename: str) -> None:
    for role, value in columns.items():
        if given(value) is not None:
            raise DatasetError(
                f"extractive_qa reads fixed keys (question, context, answers), so "
                f"{role}_column cannot be used. Rename the keys in the file instead.",
                filename=filename,
                field=f"{role}_column",
            )


def _read_squad(text: str, *, filename: str) -> tuple[list[dict[str, Any]], int]:
    """Return the examples of a SQuAD JSON document and its number of articles."""
    document = _load_json(text, filename=filename)
    articles = _require_list(document, "data", Location(filename), "the file")
    examples = []
    for article_number, article in enumerate(articles, start=1):
        where = Location(filename, record=f"article {article_number}")
        article = _require_object(article, where, "the article")
        paragraphs = _require_list(article, "paragraphs", where, "the article")

        for paragraph_number, paragraph in enumerate(paragraphs, start=1):
            where = Location(
                filename, record=f"article {article_number}, paragraph {paragraph_number}"
            )
            paragraph = _require_object(paragraph, where, "the paragraph")
            questions = _require_list(paragraph, "qas", where, "the paragraph")

            for question_number, question in enumerate(questions, start=1):
                question_where = Location(
                    filename, record=f"{where.record}, question {question_number}"
                )
                question = _require_object(question, question_where, "the question")
                example = build_example(
                    question,
                    context=paragraph.get("context"),
                    title=article.get("title"),
                    default_id=f"a{article_number}p{paragraph_number}q{question_number}",
                    location=Location(filename, record=where.record),
                )
                examples.append(example)
    return examples, len(articles)


def _read_jsonl(text: str, *, filename: str) -> Iterator[dict[str, Any]]:
    for number, record in iter_jsonl_objects(text, filename=filename):
        yield build_example(
            record,
            context=record.get("context"),
            title=record.get("title"),
            default_id=f"line-{number}",
            location=Location(filename, line=number),
        )


def _read_answers(
    record: Mapping[str, Any], context: str, location: Location
) -> list[dict[str, Any]]:
    if "answers" in record:
        raw = record["answers"]
        if isinstance(raw, dict):
            pairs = _read_columnar_answers(raw, location)
        elif isinstance(raw, list):
            pairs = [
                _read_answer_object(answer, index, location) for index, answer in enumerate(raw)
            ]
        else:
            raise location.error(
                f'the answers must be a JSON array of {{"text", "answer_start"}} objects, but '
                f"found a JSON {json_type_name(raw)}.",
                "answers",
            )
    elif "answer_text" in record or "answer_start" in record:
        pairs = [
            (record.get("answer_text"), record.get("answer_start"), "answer_text", "answer_start")
        ]
    else:
        pairs = []

    answers = []
    for text, start, text_field, start_field in pairs:
        answer_text = _check_answer(text, start, context, location, text_field, start_field)
        answers.append({"text": answer_text, "answer_start": start})
    return answers


def _read_answer_object(answer: Any, index: int, location: Location) -> tuple[Any, Any, str, str]:
    field = f"answers[{index}]"
    if not isinstance(answer, dict):
        raise location.error(
            f'an answer must be a JSON object with "text" and "answer_start", but found a '
            f"JSON {json_type_name(answer)}.",
            field,
        )
    return answer.get("text"), answer.get("answer_start"), f"{field}.text", f"{field}.answer_start"


def _read_columnar_answers(
    raw: dict[str, Any], location: Location
) -> list[tuple[Any, Any, str, str]]:
    texts = raw.get("text")
    starts = raw.get("answer_start")
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        raise location.error(
            'the answers object must hold two JSON arrays of the same length, "text" and '
            '"answer_start".',
            "answers",
        )
    return [
        (text, start, f"answers.text[{index}]", f"answers.answer_start[{index}]")
        for index, (text, start) in enumerate(zip(texts, starts, strict=True))
    ]


def _check_answer(
    text: Any, start: Any, context: str, location: Location, text_field: str, start_field: str
) -> str:
    if not isinstance(text, str) or not text.strip():
        found = "an empty string" if isinstance(text, str) else f"a JSON {json_type_name(text)}"
        raise location.error(
            f"the answer text must be a non-blank string, but found {found}.", text_field
        )
    if isinstance(start, bool) or not isinstance(start, int):
        raise location.error(
            f"answer_start must be an integer character offset, but found a JSON "
            f"{json_type_name(start)} ({preview_value(start)}).",
            start_field,
        )

    end = start + len(text)
    if start < 0 or end > len(context):
        raise location.error(
            f"answer_start {start} with an answer of {len(text)} characters does not fit in "
            f"the context, which has {len(context)} characters.",
            start_field,
        )
    if context[start:end] != text:
        raise location.error(_mismatch_message(text, start, context), start_field)
    return text


def _mismatch_message(text: str, start: int, context: str) -> str:
    found_at = []
    position = context.find(text)
    while position != -1:
        found_at.append(position)
        position = context.find(text, position + 1)

    message = (
        f"the answer text {preview_value(text)} is not at answer_start {start} of the "
        f"context, which has {preview_value(context[start : start + len(text)])} there."
    )
    if not found_at:
        return (
            message + " The text does not occur in the context, but an answer must be a span of it."
        )
    offsets = ", ".join(str(offset) for offset in found_at[:_OFFSETS_SHOWN])
    if len(found_at) > _OFFSETS_SHOWN:
        offsets += f" and {len(found_at) - _OFFSETS_SHOWN} more"
    return message + f" The text occurs at offset(s) {offsets}: set answer_start to the right one."


def _read_id(value: Any, default: str, location: Location) -> str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise location.error(
            f"the id must be a string or an integer, but found a JSON {json_type_name(value)}.",
            "id",
        )
    question_id = str(value).strip()
    if not question_id:
        raise location.error("the id is empty. Remove the key to have an id generated.", "id")
    return question_id


def _read_title(value: Any, location: Location) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise location.error(
            f"the title must be a string, but found a JSON {json_type_name(value)}.", "title"
        )
    return value.strip()


def _with_question_id(location: Location, question_id: str) -> Location:
    if location.record is None:
        return location
    return Location(location.filename, record=f"{location.record}, question id {question_id!r}")


def _check_unique_ids(examples: list[dict[str, Any]], *, filename: str) -> None:
    seen: set[str] = set()
    for example in examples:
        if example["id"] in seen:
            raise DatasetError(
                f"the question id {example['id']!r} occurs more than once. Ids must be unique, "
                "because predictions and scores are matched to questions by id.",
                filename=filename,
                field="id",
            )
        seen.add(example["id"])


def _load_json(text: str, *, filename: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"invalid JSON at column {exc.colno}: {exc.msg}. A SQuAD file is one JSON document.",
            filename=filename,
            line=exc.lineno,
        ) from None


def _require_object(value: Any, location: Location, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise location.error(
            f"{name} must be a JSON object, but found a JSON {json_type_name(value)}."
        )
    return value


def _require_list(value: Any, key: str, location: Location, owner: str) -> list[Any]:
    if not isinstance(value, dict):
        raise location.error(
            f"{owner} must be a JSON object with the key {key!r}, but found a JSON "
            f"{json_type_name(value)}. Is this a SQuAD file?"
        )
    items = value.get(key)
    if not isinstance(items, list):
        found = "is missing" if key not in value else f"is a JSON {json_type_name(items)}"
        raise location.error(
            f"{owner} needs the key {key!r} with a JSON array, but it {found}.", key
        )
    return items


def _no_answer_warnings(without_answer: int, total: int) -> list[str]:
    if not without_answer:
        return []
    return [
        f"{without_answer} of {total} questions ({percent(without_answer, total)}) have no "
        "answer. They are kept as questions whose answer is not in the context."
    ]


def _length_warnings(
    examples: list[dict[str, Any]], count_tokens: Callable[[list[str]], list[int]], max_length: int
) -> list[str]:
    # Count each distinct context once: a SQuAD paragraph has about five questions.
    contexts = list(dict.fromkeys(example["context"] for example in examples))
    context_counts = dict(zip(contexts, count_tokens(contexts), strict=True))
    question_counts = count_tokens([example["question"] for example in examples])

    # [CLS] question [SEP] context [SEP] is one token fewer than the two counted apart.
    too_long = sum(
        1
        for example, question_count in zip(examples, question_counts, strict=True)
        if question_count + context_counts[example["context"]] - 1 > max_length
    )
    if not too_long:
        return []
    return [
        f"{too_long} of {len(examples)} questions ({percent(too_long, len(examples))}) are "
        f"longer than max_length ({max_length} tokens, special tokens included) together "
        "with their context. Their contexts are split into overlapping windows, so no part "
        "of a context is cut off."
    ]
