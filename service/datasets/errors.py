"""Exceptions raised when an uploaded dataset file is rejected.

    ValueError
     └── DatasetError          the file (or a row in it) is invalid
          └── UnsupportedTaskType   the task_type value names no known task type

DatasetError subclasses ValueError so that callers which already catch ValueError keep
working. str(exc) is the user-facing message, prefixed with where the problem is:
"train.tsv, line 12, field 'label': the label is empty. Every row needs a label."
A JSON document such as a SQuAD file names a record instead of a line:
"dev.json, article 3, paragraph 2, question id 'q7', field 'answers[0].answer_start': ..."
"""

from typing import Any


class DatasetError(ValueError):
    """Raised when an uploaded file is rejected. str(exc) is the user-facing message.

    Attributes:
        message: what is wrong and how to fix it, without the location prefix.
        filename: the uploaded file name, as given by the client.
        line: 1-based physical line in the file (CSV, TSV, JSONL), or None when the problem
            concerns the whole file.
        field: the column name, 0-based column index or JSON key concerned, or None.
        record: where the problem is inside a JSON document, such as "article 3, paragraph
            2, question id 'q7'" (articles and paragraphs counted from 1), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str,
        line: int | None = None,
        field: str | None = None,
        record: str | None = None,
    ) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.field = field
        self.record = record
        super().__init__(self._format())

    def _format(self) -> str:
        location = [self.filename] if self.filename else []
        if self.record is not None:
            location.append(self.record)
        if self.line is not None:
            location.append(f"line {self.line}")
        if self.field is not None:
            location.append(f"field {self.field!r}")

        if not location:
            return self.message
        return f"{', '.join(location)}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only arguments would otherwise be lost when the exception is pickled,
        # for example by Celery when a task fails with it.
        return _rebuild_error, (
            type(self),
            self.message,
            self.filename,
            self.line,
            self.field,
            self.record,
        )


class UnsupportedTaskType(DatasetError):
    """Raised when task_type names no registered task type. The message lists the supported ones."""


def _rebuild_error(
    cls: type[DatasetError],
    message: str,
    filename: str,
    line: int | None,
    field: str | None,
    record: str | None = None,
) -> DatasetError:
    return cls(message, filename=filename, line=line, field=field, record=record)
