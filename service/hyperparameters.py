"""Hyperparameters of fine-tuning jobs, validated at submission and read again by the worker.

The API validates `POST /v1/jobs` bodies with these models, so a bad value is rejected with a
422 that names the field before any job is queued. The worker parses the stored copy again.

TrainingHyperparameters                 every strategy (linear_probe uses these alone)
└── EncoderTrainingHyperparameters      strategies that train encoder weights
    ├── LoraHyperparameters             lora
    ├── AdapterHyperparameters          adapter
    ├── IA3Hyperparameters              ia3
    └── DenseHyperparameters            dense updates, compressed or kept dense
        ├── FreezeBottomHyperparameters freeze_bottom
        ├── GradualUnfreezeHyperparameters gradual_unfreeze
        └── FullHyperparameters         full
"""

from typing import Annotated, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Linear layers of a BERT-family block that LoRA can target: the attention projections, the
# attention output projection, and the feed-forward input and output projections.
LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")

STRATEGIES = (
    "lora",
    "adapter",
    "ia3",
    "linear_probe",
    "freeze_bottom",
    "gradual_unfreeze",
    "full",
)

# Strategies whose trained encoder weights are a dense update of the base.
DENSE_STRATEGIES = ("freeze_bottom", "gradual_unfreeze", "full")


class InitFrom(BaseModel):
    """An existing adapter version that a job starts from."""

    model_config = ConfigDict(extra="forbid")

    task: Annotated[str, Field(min_length=1, max_length=200, description="Task name.")]
    version: Annotated[int, Field(ge=1, description="Adapter version of that task.")]


class TrainingHyperparameters(BaseModel):
    """Options shared by every strategy."""

    # NaN and infinity are refused: no learning rate, penalty or threshold means either.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: Annotated[int, Field(ge=1, le=100, description="Passes over the training set.")] = 3
    learning_rate: Annotated[
        float,
        Field(gt=0, le=1, description="Peak learning rate of the trained encoder weights."),
    ] = 1e-3
    head_learning_rate: Annotated[
        float, Field(gt=0, le=1, description="Peak learning rate of the task head.")
    ] = 1e-3
    batch_size: Annotated[int, Field(ge=1, le=1024, description="Examples per optimizer step.")] = (
        32
    )
    micro_batch_size: Annotated[
        int | None,
        Field(
            ge=1,
            le=1024,
            description="Examples per forward and backward pass; gradients of the micro-batches "
            "of one step are accumulated. None uses batch_size (no accumulation).",
        ),
    ] = None
    max_length: Annotated[
        int, Field(ge=8, le=512, description="Tokens kept per input, special tokens included.")
    ] = 128
    head_dropout: Annotated[
        float, Field(ge=0, lt=1, description="Dropout on the pooled vector before the head.")
    ] = 0.1
    warmup_ratio: Annotated[
        float, Field(ge=0, lt=1, description="Share of steps with a linear warmup.")
    ] = 0.06
    warmup_steps: Annotated[
        int | None,
        Field(ge=0, description="Optimizer steps of linear warmup; overrides warmup_ratio."),
    ] = None
    lr_schedule: Annotated[
        Literal["linear", "cosine", "constant"],
        Field(description="Learning-rate decay after the warmup."),
    ] = "linear"
    weight_decay: Annotated[
        float,
        Field(ge=0, le=1, description="AdamW decoupled decay of matrices (not biases or norms)."),
    ] = 0.01
    max_grad_norm: Annotated[
        float, Field(ge=0, description="Global-norm clipping threshold; 0 turns it off.")
    ] = 1.0
    eval_fraction: Annotated[
        float,
        Field(gt=0, lt=0.5, description="Stratified share held out when no eval set is given."),
    ] = 0.1
    seed: Annotated[
        int, Field(ge=0, le=2**32 - 1, description="Seed of the split, the shuffle and init.")
    ] = 0
    bf16: Annotated[
        bool | None,
        Field(description="bf16 autocast; None uses it where the CPU or GPU supports it."),
    ] = None
    fp16: Annotated[
        bool,
        Field(
            description="fp16 autocast with loss scaling (CUDA only); fp32 master weights either "
            "way."
        ),
    ] = False
    metric_for_best_model: Annotated[
        str | None,
        Field(
            description="Eval metric that selects the best epoch and drives early stopping; "
            "None takes the task type's first: accuracy, micro_f1, pearson, entity_f1 or f1.",
        ),
    ] = None
    doc_stride: Annotated[
        int | None,
        Field(
            ge=0,
            description="token_classification and extractive_qa: sub-tokens shared by "
            "consecutive windows of a long input. None: max_length // 4 for NER, 128 for QA "
            "(at most half the context room).",
        ),
    ] = None
    max_question_tokens: Annotated[
        int | None,
        Field(ge=1, description="extractive_qa: question tokens kept. None: 64."),
    ] = None
    max_answer_tokens: Annotated[
        int | None,
        Field(ge=1, le=512, description="extractive_qa: longest predicted answer. None: 30."),
    ] = None
    threshold: Annotated[
        float | None,
        Field(
            gt=0,
            lt=1,
            description="multi_label: probability at which a label is predicted. None: 0.5.",
        ),
    ] = None
    early_stopping_patience: Annotated[
        int | None,
        Field(
            ge=1,
            description="Stop after this many evaluations without improvement; None never stops "
            "early.",
        ),
    ] = None
    init_from: Annotated[
        InitFrom | None,
        Field(description="Start from this adapter version of the same task or base model."),
    ] = None
    replay_fraction: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="Share of the init_from version's training rows sampled into every epoch.",
        ),
    ] = 0.0

    @field_validator("*", mode="before")
    @classmethod
    def reject_bool_as_number(cls, value: object, info: ValidationInfo) -> object:
        # Pydantic reads true as 1 for a number field; a JSON boolean there is a mistake.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in get_args(annotation):
                raise ValueError("expected a number or string, not true or false")
        return value

    @model_validator(mode="after")
    def check_options(self) -> Self:
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 are both set; choose one mixed-precision type")
        if self.replay_fraction > 0 and self.init_from is None:
            raise ValueError("replay_fraction needs init_from, the version whose data is replayed")
        return self

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step."""
        micro = self.micro_batch_size or self.batch_size
        return -(-self.batch_size // micro)


class LinearProbeHyperparameters(TrainingHyperparameters):
    """Options of `linear_probe`: only the head trains, on frozen features computed once."""

    # On 4,000 SST-2 sentences 10 epochs came within 0.4 points of 30 in dev accuracy, at a
    # third of the head's training time (benchmarks/linear_probe_speed.py).
    epochs: Annotated[int, Field(ge=1, le=1000, description="Passes over the training set.")] = 10
    head_learning_rate: Annotated[
        float, Field(gt=0, le=1, description="Peak learning rate of the task head.")
    ] = 1e-2


class EncoderTrainingHyperparameters(TrainingHyperparameters):
    """Options of the strategies that train encoder weights (added or the base's own)."""

    layer_lr_decay: Annotated[
        float,
        Field(
            ge=1,
            le=10,
            description="Discriminative learning rates: layer l below the top block trains at "
            "learning_rate / layer_lr_decay**(top - l); the embeddings are the bottom layer. "
            "1 gives every layer the same rate.",
        ),
    ] = 1.0
    l2sp_lambda: Annotated[
        float,
        Field(
            ge=0,
            description="L2-SP penalty lambda*||theta - theta_start||^2 on the trained encoder "
            "weights; 0 turns it off.",
        ),
    ] = 0.0
    ewc_lambda: Annotated[
        float,
        Field(
            ge=0,
            description="EWC penalty lambda*sum(F*(theta - theta_start)^2), with the diagonal "
            "Fisher F of the init_from version on its own training data; 0 turns it off.",
        ),
    ] = 0.0
    ewc_fisher_samples: Annotated[
        int, Field(ge=1, le=100_000, description="Training rows of init_from used for F.")
    ] = 256

    @model_validator(mode="after")
    def check_ewc(self) -> Self:
        if self.ewc_lambda > 0 and self.init_from is None:
            raise ValueError("ewc_lambda needs init_from, the version whose Fisher anchors EWC")
        return self


class LoraHyperparameters(EncoderTrainingHyperparameters):
    """Options of the `lora` strategy: a low-rank update B·A on chosen linear layers."""

    lora_rank: Annotated[int, Field(ge=1, le=256, description="Rank r of the update.")] = 8
    lora_alpha: Annotated[
        float, Field(gt=0, description="Scale numerator: the update is multiplied by alpha/r.")
    ] = 16.0
    lora_dropout: Annotated[float, Field(ge=0, lt=1, description="Dropout on the LoRA input.")] = (
        0.1
    )
    use_rslora: Annotated[
        bool, Field(description="Rank-stabilised scale alpha/sqrt(r) instead of alpha/r.")
    ] = False
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


class AdapterHyperparameters(EncoderTrainingHyperparameters):
    """Options of `adapter`: bottleneck adapters after the attention and feed-forward outputs."""

    bottleneck_size: Annotated[
        int, Field(ge=1, le=4096, description="Width m of the adapter's down-projection.")
    ] = 64


class IA3Hyperparameters(EncoderTrainingHyperparameters):
    """Options of `ia3`: learned scales of keys, values and the feed-forward activation."""

    learning_rate: Annotated[
        float,
        Field(gt=0, le=1, description="Peak learning rate of the scaling vectors."),
    ] = 3e-2


class DenseHyperparameters(EncoderTrainingHyperparameters):
    """Options shared by the strategies that update the base's own weights."""

    learning_rate: Annotated[
        float,
        Field(gt=0, le=1, description="Peak learning rate of the top encoder block."),
    ] = 3e-4
    layer_lr_decay: Annotated[
        float,
        Field(
            ge=1,
            le=10,
            description="Discriminative learning rates: layer l below the top block trains at "
            "learning_rate / layer_lr_decay**(top - l); the embeddings are the bottom layer. "
            "1 gives every layer the same rate.",
        ),
    ] = 2.6
    svd_rank: Annotated[
        int,
        Field(
            ge=1,
            le=1024,
            description="Rank of the truncated SVD that turns each weight matrix's update into "
            "a LoRA-shaped delta served from the shared base.",
        ),
    ] = 32
    keep_dense: Annotated[
        bool,
        Field(
            description="Store the dense update instead of compressing it; it is then served "
            "by a dedicated copy of the encoder."
        ),
    ] = False


class FreezeBottomHyperparameters(DenseHyperparameters):
    """Options of `freeze_bottom`: the embeddings and the bottom blocks stay frozen."""

    frozen_blocks: Annotated[
        int | None,
        Field(
            ge=0,
            le=128,
            description="Blocks k frozen from the bottom, below the trained ones; None freezes "
            "the bottom half (rounded down).",
        ),
    ] = None


class GradualUnfreezeHyperparameters(DenseHyperparameters):
    """Options of `gradual_unfreeze`: the head first, then one more block per epoch, top down."""

    epochs: Annotated[int, Field(ge=1, le=100, description="Passes over the training set.")] = 4


class FullHyperparameters(DenseHyperparameters):
    """Options of `full`: every encoder weight trains."""


HYPERPARAMETER_MODELS: dict[str, type[TrainingHyperparameters]] = {
    "lora": LoraHyperparameters,
    "adapter": AdapterHyperparameters,
    "ia3": IA3Hyperparameters,
    "linear_probe": LinearProbeHyperparameters,
    "freeze_bottom": FreezeBottomHyperparameters,
    "gradual_unfreeze": GradualUnfreezeHyperparameters,
    "full": FullHyperparameters,
}


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
