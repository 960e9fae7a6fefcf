"""The training loop for text classification on the shared base.

One `step` is one optimizer update. The loop tokenises once, batches rows of similar length
with dynamic padding, runs under bf16 autocast where the hardware supports it, evaluates after
every epoch and keeps the best epoch's trainable tensors, which become the delta.
"""

import logging
import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerFast

from service.hyperparameters import TrainingHyperparameters
from service.metrics import classification_metrics
from service.modeling.base import BaseModelSpec, build_encoder
from service.modeling.delta import Delta
from service.modeling.encoder import Encoder
from service.modeling.heads import ClassificationHead, pool
from worker.trainer.callbacks import TrainerCallback, TrainerState
from worker.trainer.data import iterate_padded, length_grouped_batches, sorted_batches, tokenize
from worker.trainer.schedule import warmup_linear_decay
from worker.trainer.strategies import build_strategy

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 128


def cpu_supports_bf16() -> bool:
    """Return True when this CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TaskModel(nn.Module):
    """Encoder, pooling and classification head: input ids `[B, T]` to logits `[B, C]`."""

    def __init__(self, encoder: Encoder, pooling: str, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = ClassificationHead(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask)
        pooled = pool(hidden, attention_mask, self.pooling, self.encoder)
        return self.head(pooled.float())


@dataclass
class TrainingResult:
    delta: Delta
    metrics: dict[str, float]
    best_epoch: int
    train_seconds: float
    train_samples_per_second: float


class ClassificationTrainer:
    """Fine-tunes the base on (text, label) examples with one strategy.

    Args:
        spec: the base model folder's spec (weights are loaded into a fresh copy).
        tokenizer: the base model's fast tokenizer.
        fingerprint: the base model's fingerprint, recorded in the delta.
        strategy: strategy name, e.g. "lora".
        hyperparameters: validated hyperparameters for that strategy.
        train_examples, eval_examples: `{"text": str, "label": str}` rows.
        labels: the label set; the head's output i is `labels[i]`.
        callbacks: progress hooks, called in order.
    """

    def __init__(
        self,
        *,
        spec: BaseModelSpec,
        tokenizer: PreTrainedTokenizerFast,
        fingerprint: str,
        strategy: str,
        hyperparameters: TrainingHyperparameters,
        train_examples: list[dict],
        eval_examples: list[dict],
        labels: list[str],
        callbacks: list[TrainerCallback] | None = None,
        log_every: int = 10,
    ) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.strategy = build_strategy(strategy, hyperparameters)
        self.hp = hyperparameters
        self.train_examples = train_examples
        self.eval_examples = eval_examples
        self.labels = labels
        self.callbacks = callbacks or []
        self.log_every = log_every
        self.state = TrainerState()
        self.use_bf16 = (
            cpu_supports_bf16() if hyperparameters.bf16 is None else hyperparameters.bf16
        )

    def fit(self) -> TrainingResult:
        hp = self.hp
        torch.manual_seed(hp.seed)
        random.seed(hp.seed)

        # data
        label_index = {label: i for i, label in enumerate(self.labels)}
        train_ids = tokenize(
            self.tokenizer, [e["text"] for e in self.train_examples], hp.max_length
        )
        train_targets = torch.tensor([label_index[e["label"]] for e in self.train_examples])
        eval_ids = tokenize(self.tokenizer, [e["text"] for e in self.eval_examples], hp.max_length)
        eval_targets = [label_index[e["label"]] for e in self.eval_examples]
        lengths = [len(ids) for ids in train_ids]

        # model and optimizer
        encoder = build_encoder(self.spec)
        encoder_parameters = self.strategy.prepare(encoder)
        model = TaskModel(encoder, self.spec.pooling, len(self.labels))
        optimizer = torch.optim.AdamW(
            [
                {"params": encoder_parameters, "lr": hp.learning_rate},
                {"params": list(model.head.parameters()), "lr": hp.head_learning_rate},
            ],
            weight_decay=hp.weight_decay,
        )
        trainable = [p for group in optimizer.param_groups for p in group["params"]]
        steps_per_epoch = math.ceil(len(train_ids) / hp.batch_size)
        total_steps = steps_per_epoch * hp.epochs
        warmup_steps = int(hp.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_linear_decay(total_steps, warmup_steps)
        )
        self.state = TrainerState(total_steps=total_steps, num_epochs=hp.epochs)
        self._notify("on_train_begin")
        logger.info(
            "training %s on %d rows, %d eval rows, %d steps, bf16=%s",
            self.strategy.name,
            len(train_ids),
            len(eval_ids),
            total_steps,
            self.use_bf16,
        )

        best_snapshot: dict[str, torch.Tensor] | None = None
        best_metrics: dict[str, float] = {}
        started = time.perf_counter()
        for epoch in range(hp.epochs):
            model.train()
            batches = length_grouped_batches(lengths, hp.batch_size, seed=hp.seed + epoch)
            running_loss = torch.zeros(())
            running_count = 0
            for rows, input_ids, attention_mask in iterate_padded(
                train_ids, batches, self.tokenizer.pad_token_id
            ):
                # forward and backward
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.use_bf16):
                    logits = model(input_ids, attention_mask)
                loss = F.cross_entropy(logits.float(), train_targets[rows])
                loss.backward()

                # update
                if hp.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, hp.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                # progress, read from the loss only every `log_every` steps
                self.state.step += 1
                self.state.epoch = (
                    epoch + (self.state.step - epoch * steps_per_epoch) / steps_per_epoch
                )
                running_loss += loss.detach()
                running_count += 1
                if self.state.step % self.log_every == 0 or self.state.step == total_steps:
                    self.state.loss = running_loss.item() / running_count
                    self.state.learning_rate = scheduler.get_last_lr()[0]
                    running_loss.zero_()
                    running_count = 0
                    self._notify("on_log")

            # evaluate and keep the best epoch
            metrics = self.evaluate(model, eval_ids, eval_targets)
            metrics["epoch"] = epoch + 1
            self.state.eval_history.append(metrics)
            self._notify("on_evaluate", metrics)
            if self.state.best_metric is None or metrics["accuracy"] > self.state.best_metric:
                self.state.best_metric = metrics["accuracy"]
                self.state.best_epoch = epoch + 1
                best_metrics = metrics
                best_snapshot = {
                    n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
                }

        train_seconds = time.perf_counter() - started
        assert best_snapshot is not None, "at least one epoch runs"
        model.load_state_dict(best_snapshot, strict=False)
        self._notify("on_train_end")
        return TrainingResult(
            delta=self._export(model),
            metrics={k: v for k, v in best_metrics.items() if k != "epoch"},
            best_epoch=self.state.best_epoch or hp.epochs,
            train_seconds=train_seconds,
            train_samples_per_second=len(train_ids) * hp.epochs / train_seconds,
        )

    @torch.inference_mode()
    def evaluate(
        self, model: TaskModel, token_ids: list[list[int]], targets: list[int]
    ) -> dict[str, float]:
        """Return accuracy and macro-F1 of `model` on tokenised rows."""
        model.eval()
        predictions = [0] * len(token_ids)
        batches = sorted_batches([len(ids) for ids in token_ids], EVAL_BATCH_SIZE)
        for rows, input_ids, attention_mask in iterate_padded(
            token_ids, batches, self.tokenizer.pad_token_id
        ):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.use_bf16):
                logits = model(input_ids, attention_mask)
            for row, prediction in zip(rows, logits.argmax(dim=-1).tolist(), strict=True):
                predictions[row] = prediction
        return classification_metrics(predictions, targets, len(self.labels))

    def _export(self, model: TaskModel) -> Delta:
        lora, scale = self.strategy.export(model.encoder)
        head = {name: p.detach().clone() for name, p in model.head.named_parameters()}
        return Delta(
            strategy=self.strategy.name,
            task_type="text_classification",
            labels=list(self.labels),
            base_fingerprint=self.fingerprint,
            pooling=self.spec.pooling,
            max_length=self.hp.max_length,
            lora_scale=scale,
            lora=lora,
            head=head,
        )

    def _notify(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self.state, *args)
