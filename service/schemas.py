"""Request and response bodies of the HTTP API.

Response schemas are built from registry rows with `model_validate(row)`. The routes fill in
those that need more than one row (TaskPublic, AdapterPublic).
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

# A task name starts with a letter or digit, so "." and ".." (which clients drop from URLs)
# are never names.
TASK_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_PREDICT_INPUTS = 1024
MAX_FANOUT_TASKS = 256
# Characters of one predict input, and of all inputs of one request: a request over them
# would hold the forward thread for minutes and delay every other task's predictions.
MAX_INPUT_CHARS = 100_000
MAX_REQUEST_CHARS = 2_000_000


def as_utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for DateTime(timezone=True) columns. The registry
    # writes every timestamp in UTC, so a naive value is UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# An uploaded, validated dataset, without its examples.
class DatasetPublic(ORMModel):
    id: str
    name: str
    task_type: str
    format: str
    num_rows: int
    labels: list[str]
    label_counts: dict[str, int]
    warnings: list[str]
    stats: dict[str, Any]
    sha256: str
    created_at: UtcDatetime


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


# Body of POST /v1/jobs.
class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            pattern=TASK_NAME_PATTERN,
            description="Task name: letters, digits, '_', '.' and '-'. Created on first use.",
        ),
    ]
    train_dataset_id: str
    eval_dataset_id: str | None = None
    strategy: str = "lora"
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Strategy options. Omitted ones take their defaults."
    )


# A fine-tuning job and its progress.
class JobPublic(ORMModel):
    id: str
    task: str = Field(validation_alias=AliasChoices("task_name", "task"))
    status: str
    progress: float
    step: int
    total_steps: int
    epoch: float
    loss: float | None
    metrics: dict[str, Any]
    warnings: list[str]
    error: str | None
    strategy: str
    hyperparameters: dict[str, Any]
    train_dataset_id: str
    eval_dataset_id: str | None
    adapter_version: int | None
    # Times a worker started the job: more than 1 after a lost worker or a shutdown.
    attempts: int
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None

    @computed_field
    @property
    def eta_seconds(self) -> float | None:
        """Estimated seconds left, extrapolated from the progress so far. Null unless running."""
        if self.status != "running" or self.started_at is None or not 0 < self.progress < 1:
            return None
        elapsed = (datetime.now(UTC) - self.started_at).total_seconds()
        return round(max(elapsed, 0.0) * (1 - self.progress) / self.progress, 1)


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


# One point of a job's history: a training loss, an evaluation, or a log line.
class JobEventPublic(ORMModel):
    id: int
    kind: str
    step: int
    epoch: float
    loss: float | None
    learning_rate: float | None
    metrics: dict[str, Any]
    message: str | None
    created_at: UtcDatetime


class JobEventsPublic(BaseModel):
    data: list[JobEventPublic]
    count: int


# A task and the metrics of its live adapter version.
class TaskPublic(BaseModel):
    name: str
    task_type: str
    labels: list[str]
    live_version: int | None
    promotion_policy: str
    pinned: bool
    predictions_count: int
    metrics: dict[str, Any]
    adapters_count: int
    created_at: UtcDatetime


class TasksPublic(BaseModel):
    data: list[TaskPublic]
    count: int


# One trained version of a task, without its delta.
class AdapterPublic(ORMModel):
    version: int
    strategy: str
    config: dict[str, Any]
    labels: list[str]
    metrics: dict[str, Any]
    size_bytes: int
    sha256: str
    base_fingerprint: str
    job_id: str | None
    created_at: UtcDatetime
    live: bool = False


class AdaptersPublic(BaseModel):
    data: list[AdapterPublic]
    count: int


def check_has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("input is empty or only whitespace. Send the text to classify.")
    return value


def count_chars(value: str | dict[str, Any]) -> int:
    """Return the characters of an input; a token list counts as its tokens joined by spaces."""
    if isinstance(value, str):
        return len(value)
    total = 0
    for item in value.values():
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list) and all(isinstance(token, str) for token in item):
            total += sum(len(token) for token in item) + max(len(item) - 1, 0)
        else:
            total += len(str(item))
    return total


def check_input(value: str | dict[str, Any]) -> str | dict[str, Any]:
    if count_chars(value) > MAX_INPUT_CHARS:
        raise ValueError(
            f"input has {count_chars(value)} characters; the maximum is {MAX_INPUT_CHARS}. "
            "Split the text into several inputs."
        )
    if isinstance(value, str):
        return check_has_text(value)
    return value


def check_request_size(inputs: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
    total = sum(count_chars(value) for value in inputs)
    if total > MAX_REQUEST_CHARS:
        raise ValueError(
            f"inputs have {total} characters in all; the maximum per request is "
            f"{MAX_REQUEST_CHARS}. Send them in several requests."
        )
    return inputs


# One input: a text, or an object of texts such as {"text", "text_pair"} or
# {"question", "context"}, as the task type expects.
PredictInput = Annotated[str | dict[str, Any], AfterValidator(check_input)]


# Body of POST /v1/tasks/{task}/predict.
class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Annotated[
        list[PredictInput],
        Field(min_length=1, max_length=MAX_PREDICT_INPUTS, description="Inputs to predict on."),
        AfterValidator(check_request_size),
    ]


class PredictResponse(BaseModel):
    task: str
    adapter_version: int
    predictions: list[dict[str, Any]] = Field(
        description="One per input. Classification: {label, scores}; see the README for the "
        "other task types."
    )


# Body of PATCH /v1/tasks/{task}: the serving settings of a task.
class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    promotion_policy: Literal["manual", "always", "if_better"] | None = Field(
        default=None,
        description="What a succeeded job does: manual (wait for promote), always (go live), "
        "if_better (go live if its eval metric is at least the live version's).",
    )
    pinned: bool | None = Field(
        default=None, description="Keep the live adapter in every serving cache."
    )


# Body of POST /v1/predict: every input through every task.
class FanOutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: Annotated[
        list[str], Field(min_length=1, max_length=MAX_FANOUT_TASKS, description="Task names.")
    ]
    inputs: Annotated[
        list[PredictInput],
        Field(min_length=1, max_length=MAX_PREDICT_INPUTS, description="Inputs to predict on."),
        AfterValidator(check_request_size),
    ]

    @field_validator("tasks")
    @classmethod
    def check_unique_tasks(cls, value: list[str]) -> list[str]:
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"tasks {duplicates} are listed more than once; list each once.")
        return value

    @model_validator(mode="after")
    def check_total_work(self) -> Self:
        # Every task runs every input, so the request's cost is its characters times its tasks.
        total = sum(count_chars(value) for value in self.inputs) * len(self.tasks)
        if total > MAX_REQUEST_CHARS:
            raise ValueError(
                f"{len(self.tasks)} tasks times the inputs' characters make {total}; the maximum "
                f"per request is {MAX_REQUEST_CHARS}. Send fewer tasks or inputs per request."
            )
        return self


class FanOutResponse(BaseModel):
    results: list[PredictResponse]
