"""Dataset upload, validation and listing."""

import hashlib
import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from tokenizers import Tokenizer

from service.api.deps import SessionDep, SettingsDep
from service.datasets import DatasetError, encode_examples, parse_dataset
from service.hyperparameters import LoraHyperparameters
from service.modeling.base import load_tokenizer
from service.registry.models import Dataset
from service.schemas import DatasetPublic, DatasetsPublic
from service.tasktypes import qa

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/datasets", tags=["datasets"])

# Texts longer than the default max_length of a job are reported in the upload's warnings.
DEFAULT_MAX_LENGTH: int = LoraHyperparameters.model_fields["max_length"].default
QA_MAX_LENGTH: int = qa.DEFAULT_MAX_LENGTH


@lru_cache(maxsize=4)
def get_token_counter(base_model_dir: Path) -> Callable[[list[str]], list[int]]:
    """Return a function that counts the base tokenizer's tokens of each text, specials included."""
    # A private copy of the Rust tokenizer: the serving engine may switch truncation on the
    # shared one at any time, which would cap the counts and could fail a concurrent call.
    tokenizer = Tokenizer.from_str(load_tokenizer(base_model_dir).backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count_tokens(texts: list[str]) -> list[int]:
        encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
        return [len(encoding.ids) for encoding in encodings]

    return count_tokens


def upload_too_large_detail(max_upload_mb: int) -> str:
    return f"File is larger than the {max_upload_mb} MiB upload limit (LORAPLEX_MAX_UPLOAD_MB)."


def dataset_error_response(exc: DatasetError) -> JSONResponse:
    return JSONResponse(
        status_code=422, content={"detail": str(exc), "line": exc.line, "field": exc.field}
    )


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses={
        413: {"description": "File larger than LORAPLEX_MAX_UPLOAD_MB"},
        422: {"description": "File rejected. `line` and `field` locate the problem."},
    },
)
def create_dataset(
    session: SessionDep,
    settings: SettingsDep,
    file: UploadFile,
    task_type: Annotated[str, Form()],
    name: Annotated[str | None, Form(min_length=1, max_length=200)] = None,
    text_column: Annotated[str | None, Form()] = None,
    label_column: Annotated[str | None, Form()] = None,
    data_format: Annotated[str | None, Form(alias="format")] = None,
    text_pair_column: Annotated[str | None, Form()] = None,
    label_delimiter: Annotated[str | None, Form()] = None,
) -> DatasetPublic | JSONResponse:
    """Upload a dataset file, validate every row and store the normalised examples."""
    # A plain `def` route runs in FastAPI's threadpool, so parsing (CPU work) and the blob
    # write happen off the event loop.
    filename = file.filename or "upload"

    # Read one byte past the limit to tell "at the limit" from "over it".
    max_bytes = settings.max_upload_mb * 1024 * 1024
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        logger.info("dataset upload rejected: larger than %d MiB", settings.max_upload_mb)
        raise HTTPException(status_code=413, detail=upload_too_large_detail(settings.max_upload_mb))
    sha256 = hashlib.sha256(data).hexdigest()

    try:
        report = parse_dataset(
            data,
            filename=filename,
            task_type=task_type,
            format=data_format,
            text_column=text_column,
            label_column=label_column,
            text_pair_column=text_pair_column,
            label_delimiter=label_delimiter,
            count_tokens=get_token_counter(settings.resolved_base_model_dir),
            # the length a job of this type trains at unless it sets max_length
            max_length=QA_MAX_LENGTH if task_type == "extractive_qa" else DEFAULT_MAX_LENGTH,
        )
    except DatasetError as exc:
        logger.info(
            "dataset upload %s rejected at line %s, field %r", sha256[:12], exc.line, exc.field
        )
        return dataset_error_response(exc)

    dataset = Dataset(
        name=name or filename[:200],
        task_type=report.task_type,
        format=report.format,
        filename=filename[:255],
        num_rows=report.num_rows,
        labels=report.labels,
        label_counts=report.label_counts,
        warnings=report.warnings,
        stats=report.stats,
        sha256=sha256,
        size_bytes=len(data),
        content=encode_examples(report.examples),
    )
    session.add(dataset)
    session.flush()
    logger.info(
        "dataset %s stored: %s, %d rows, %d labels, %d bytes",
        dataset.id,
        dataset.task_type,
        dataset.num_rows,
        len(dataset.labels),
        dataset.size_bytes,
    )
    return DatasetPublic.model_validate(dataset)


@router.get("", response_model=DatasetsPublic)
def read_datasets(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DatasetsPublic:
    """List datasets, newest first."""
    count = session.scalar(select(func.count()).select_from(Dataset))
    datasets = session.scalars(
        select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id).offset(offset).limit(limit)
    ).all()

    return DatasetsPublic(
        data=[DatasetPublic.model_validate(dataset) for dataset in datasets], count=count or 0
    )


@router.get("/{dataset_id}", response_model=DatasetPublic, responses={404: {}})
def read_dataset(session: SessionDep, dataset_id: str) -> DatasetPublic:
    """Read one dataset's summary."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise HTTPException(status_code=404, detail="Dataset not found")
    return DatasetPublic.model_validate(dataset)
