"""Hyperparameters of fine-tuning jobs, validated at submission and read again by the worker.

The API validates `POST /v1/jobs` bodies with these models, so a bad value is rejected with a
422 that names the field before any job is queued; the worker parses the stored copy again.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Linear layers of a BERT-family block that LoRA can target: the attention projections, the
# attention output projection, and the feed-forward input and output projections.
LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")

STRATEGIES = ("lora",)


class TrainingHyperparameters(BaseModel):
    """Options shared by every strategy."""

    model_config = ConfigDict(extra="forbid")

    epochs: Annotated[int, Field(ge=1, le=100, description="Passes over the training set.")] = 3
    learning_rate: Annotated[
        float, Field(gt=0, le=1, description="Peak learning rate of the trained encoder weights.")
    ] = 1e-3
    head_learning_rate: Annotated[
        float, Field(gt=0, le=1, description="Peak learning rate of the task head.")
    ] = 1e-3
    batch_size: Annotated[int, Field(ge=1, le=1024, description="Examples per optimizer step.")] = (
        32
    )
    max_length: Annotated[
        int, Field(ge=8, le=512, description="Tokens kept per input, special tokens included.")
    ] = 128
    warmup_ratio: Annotated[
        float, Field(ge=0, lt=1, description="Share of steps with a linear warmup.")
    ] = 0.06
    weight_decay: Annotated[float, Field(ge=0, le=1, description="AdamW decoupled decay.")] = 0.01
    max_grad_norm: Annotated[
        float, Field(ge=0, description="Global-norm clipping threshold; 0 turns it off.")
    ] = 1.0
    eval_fraction: Annotated[
        float,
        Field(gt=0, lt=0.5, description="Stratified share held out when no eval set is given."),
    ] = 0.1
    seed: Annotated[int, Field(ge=0, description="Seed of the split, the shuffle and init.")] = 0
    bf16: Annotated[
        bool | None,
        Field(description="bf16 autocast; None uses it where the CPU or GPU supports it."),
    ] = None


class LoraHyperparameters(TrainingHyperparameters):
    """Options of the `lora` strategy: a low-rank update B·A on chosen linear layers."""

    lora_rank: Annotated[int, Field(ge=1, le=256, description="Rank r of the update.")] = 8
    lora_alpha: Annotated[
        float, Field(gt=0, description="Scale numerator: the update is multiplied by alpha/r.")
    ] = 16.0
    lora_dropout: Annotated[float, Field(ge=0, lt=1, description="Dropout on the LoRA input.")] = (
        0.1
    )
    target_modules: Annotated[
        list[str], Field(min_length=1, description=f"Linear layers to adapt: {LORA_TARGETS}.")
    ] = list(LORA_TARGETS)

    @field_validator("target_modules")
    @classmethod
    def check_target_modules(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(LORA_TARGETS))
        if unknown:
            raise ValueError(f"unknown target modules {unknown}; choose from {list(LORA_TARGETS)}")
        return sorted(set(value), key=LORA_TARGETS.index)


HYPERPARAMETER_MODELS: dict[str, type[TrainingHyperparameters]] = {"lora": LoraHyperparameters}


def parse_hyperparameters(strategy: str, values: dict | None) -> TrainingHyperparameters:
    """Validate `values` for `strategy` and fill in the defaults.

    Raises:
        ValueError: for an unknown strategy.
        pydantic.ValidationError: for an unknown field or a value out of range.
    """
    try:
        model = HYPERPARAMETER_MODELS[strategy]
    except KeyError:
        raise ValueError(
            f"unknown strategy {strategy!r}; supported strategies: {list(HYPERPARAMETER_MODELS)}"
        ) from None
    return model.model_validate(values or {})
