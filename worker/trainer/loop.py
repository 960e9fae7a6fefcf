"""The training loop on the shared base, the same for every task type and strategy.

One `step` is one optimizer update. With `micro_batch_size` below `batch_size`, a step
accumulates the gradients of several micro-batches. The loop encodes the examples once
through the task type (worker.trainer.tasktypes), batches rows of similar length with dynamic
padding, runs under the precision of `worker.trainer.precision`, evaluates with the task
type's metrics after every epoch, keeps the best epoch's trainable tensors (stopping early
when asked), and exports them as the delta. A dense update is compressed and evaluated again
in the form that will be served.

A step's loss is the task type's summed loss over the step's rows divided by the step's loss
units (rows, or labelled tokens for NER), so it is a mean over the whole step however the
rows are split into micro-batches.
"""

import logging
import math
import random
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedTokenizerFast

from service.hyperparameters import EncoderTrainingHyperparameters, TrainingHyperparameters
from service.modeling.base import BaseModelSpec, build_encoder
from service.modeling.delta import Delta
from service.modeling.dense import build_dedicated_encoder, encoder_nbytes
from service.tasktypes.options import resolve_task_options
from worker.trainer.batches import PaddedBatch, make_batch
from worker.trainer.callbacks import TrainerCallback, TrainerState
from worker.trainer.data import (
    grouped_batches_of,
    sample_replay_rows,
    sorted_batches,
    split_micro_batches,
)
from worker.trainer.dropout import use_fast_dropout
from worker.trainer.evaluation import evaluate, evaluate_served
from worker.trainer.features import compute_features
from worker.trainer.forgetting import build_penalties, init_version_fisher
from worker.trainer.model import TaskModel
from worker.trainer.optim import build_optimizer, build_parameter_groups
from worker.trainer.precision import (
    Precision,
    cast_frozen_weights,
    cpu_supports_bf16,
    limited_threads,
    resolve_device,
    resolve_precision,
)
from worker.trainer.regularizers import AnchorPenalty
from worker.trainer.run import FeatureBatch, Run, TrainingRows
from worker.trainer.schedule import build_schedule, resolve_warmup_steps
from worker.trainer.strategies import build_strategy
from worker.trainer.tasktypes import (
    Features,
    TaskOptions,
    build_task_type,
    concat_features,
)

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 128

# TaskModel and cpu_supports_bf16 were defined here before the loop was split, so callers may
# still import them from this module.
__all__ = ["TaskModel", "Trainer", "TrainingResult", "cpu_supports_bf16"]


@dataclass
class TrainingResult:
    """The outcome of one run.

    Attributes:
        delta: the delta to register.
        metrics: eval metrics of the delta as it will be served (after any compression).
        best_epoch: the 1-based epoch whose weights the delta contains.
        train_seconds: wall time of `fit` minus the time spent evaluating.
        train_samples_per_second: training rows processed (replay included) per train second.
        report: measurements for the job's metrics, such as the metrics before compression,
            the SVD's relative Frobenius error or a dense copy's memory.
        total_seconds: wall time of `fit`, evaluation included.
    """

    delta: Delta
    metrics: dict[str, float]
    best_epoch: int
    train_seconds: float
    train_samples_per_second: float
    report: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


class Trainer:
    """Fine-tunes the base on one task type's examples with one strategy.

    Args:
        spec: the base model folder's spec (weights are loaded into a fresh copy).
        tokenizer: the base model's fast tokenizer.
        fingerprint: the base model's fingerprint, recorded in the delta.
        strategy: strategy name, e.g. "lora".
        hyperparameters: validated hyperparameters for that strategy.
        train_examples, eval_examples: examples as the task type's datasets decode them,
            such as `{"text": str, "label": str}` for text classification.
        labels: the training dataset's labels (or tags); the head's output i is `labels[i]`
            for the task types that classify.
        callbacks: progress hooks, called in order.
        log_every: steps between `on_log` calls.
        init_delta: the delta of the `init_from` version, when the job continues from one.
        init_examples: that version's training rows, for replay and for EWC's Fisher.
        device: where to train; None picks CUDA when available, else CPU.
        task_type: the examples' task type, one of worker.trainer.tasktypes'.

    Raises:
        ValueError: the hyperparameters do not fit the task type or the base model.
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
        init_delta: Delta | None = None,
        init_examples: list[dict] | None = None,
        device: torch.device | str | None = None,
        task_type: str = "text_classification",
    ) -> None:
        hyperparameters = resolve_task_options(task_type, hyperparameters, labels)
        max_positions = spec.config.max_position_embeddings - spec.config.position_offset
        if hyperparameters.max_length > max_positions:
            raise ValueError(
                f"max_length {hyperparameters.max_length} is more than the base model's "
                f"{max_positions} positions; use at most {max_positions}."
            )
        self.spec = spec
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.strategy = build_strategy(strategy, hyperparameters)
        self.hp = hyperparameters
        self.train_examples = train_examples
        self.eval_examples = eval_examples
        self.labels = labels
        self.task = build_task_type(
            task_type, labels, TaskOptions.from_hyperparameters(hyperparameters)
        )
        self.callbacks = callbacks or []
        self.log_every = log_every
        self.init_delta = init_delta
        self.init_examples = init_examples or []
        self.state = TrainerState()
        self.device = resolve_device(device)
        self.precision: Precision = resolve_precision(hyperparameters, self.device)
        self.use_bf16 = self.precision.dtype == torch.bfloat16
        self.model: TaskModel | None = None
        self.penalties: list[AnchorPenalty] = []
        self._eval_seconds = 0.0
        if hyperparameters.init_from is not None and init_delta is None:
            raise ValueError("hyperparameters set init_from, but no init_delta was given.")

    # setup

    def _featurize(self) -> tuple[TrainingRows, Features]:
        """Encode the training rows (with any replayed ones) and the eval rows."""
        task = self.task
        replay = self.init_examples if self.hp.replay_fraction > 0 else []
        unknown = task.unknown_labels(replay)
        if unknown:
            raise ValueError(
                f"init_from version's training rows have labels {unknown[:5]} that this job "
                "lacks, so they cannot be replayed. Set replay_fraction to 0."
            )
        task.fit(self.train_examples)
        own = task.featurize(self.tokenizer, self.train_examples)
        replayed = task.featurize(self.tokenizer, replay) if replay else None
        rows = TrainingRows(
            features=concat_features(own, replayed) if replayed is not None else own,
            num_train=len(own),
            num_replay=len(replayed) if replayed is not None else 0,
        )
        return rows, task.featurize(self.tokenizer, self.eval_examples)

    def _build_model(self) -> TaskModel:
        encoder = build_encoder(self.spec).to(self.device)
        self.strategy.prepare(encoder)
        if self.init_delta is not None:
            self.strategy.load_init(encoder, self.init_delta)
        model = TaskModel(
            encoder,
            self.spec.pooling,
            self.task.num_outputs,
            self.hp.head_dropout,
            token_level=self.task.token_level,
        ).to(self.device)
        init = self.init_delta
        if init is not None and init.task_type == self.task.name and init.labels == self.labels:
            model.head.load_state_dict(init.head)

        # Speed: frozen matrices and the residual stream in the autocast dtype, and CPU dropout
        # without Bernoulli draws.
        trainable = set(self.strategy.trainable_parameters(encoder))
        if self.precision.dtype is not None:
            cast_frozen_weights(encoder, self.precision.dtype, trainable)
            encoder.residual_dtype = self.precision.dtype
        if self.device.type == "cpu":
            use_fast_dropout(model, encoder)
        return model

    def _build_penalties(
        self, model: TaskModel, encoder_parameters: dict[str, nn.Parameter]
    ) -> list[AnchorPenalty]:
        if not isinstance(self.hp, EncoderTrainingHyperparameters):
            return []
        return build_penalties(
            self.hp,
            encoder_parameters,
            lambda parameters: init_version_fisher(
                model,
                parameters,
                self.init_delta,
                self.init_examples,
                self.task,
                self.tokenizer,
                self.hp,
                self.precision,
                lambda size: self.strategy.route(size, self.device),
            ),
        )

    # the run

    def fit(self) -> TrainingResult:
        """Train, keep the best epoch, and return its delta and metrics."""
        started = time.perf_counter()
        self._eval_seconds = 0.0
        self._running_losses: list[torch.Tensor] = []
        torch.manual_seed(self.hp.seed)
        random.seed(self.hp.seed)

        run = self._prepare()
        # Head-only steps on cached features are too small to split across threads.
        threads = 1 if run.cached is not None and self.device.type == "cpu" else None
        with limited_threads(threads):
            for epoch in range(self.hp.epochs):
                self._train_epoch(run, epoch)
                if self._end_epoch(run, epoch):
                    break

        assert run.best_snapshot is not None, "at least one epoch runs"
        with torch.no_grad():
            for name, parameter in run.model.named_parameters():
                if name in run.best_snapshot:
                    parameter.copy_(run.best_snapshot[name])
        return self._finish(run, started)

    def _prepare(self) -> Run:
        """Tokenise, build the model, the penalties, the optimizer and the schedule."""
        hp = self.hp

        # data and model
        rows, eval_features = self._featurize()
        model = self._build_model()
        self.model = model
        encoder_parameters = self.strategy.trainable_parameters(model.encoder)
        self.penalties = self._build_penalties(model, encoder_parameters)
        pad_id = self.tokenizer.pad_token_id
        eval_batches = [
            make_batch(batch, eval_features, pad_id, self.device)
            for batch in sorted_batches(eval_features.lengths, EVAL_BATCH_SIZE)
        ]

        # The linear probe of a pooled task type trains on features computed once. A
        # token-level head reads every token, so its frozen encoder runs in every step.
        cached = eval_cached = None
        if self.strategy.uses_cached_features and not self.task.token_level:
            cached = self._features(model, rows.features)
            eval_cached = self._features(model, eval_features)

        # optimizer and schedule
        optimizer = build_optimizer(
            build_parameter_groups(
                encoder_parameters,
                dict(model.head.named_parameters()),
                num_blocks=self.spec.config.num_hidden_layers,
                learning_rate=hp.learning_rate,
                head_learning_rate=hp.head_learning_rate,
                layer_lr_decay=getattr(hp, "layer_lr_decay", 1.0),
                weight_decay=hp.weight_decay,
            ),
            self.device,
        )
        replay_per_epoch = round(hp.replay_fraction * rows.num_replay)
        steps_per_epoch = math.ceil((rows.num_train + replay_per_epoch) / hp.batch_size)
        total_steps = steps_per_epoch * hp.epochs
        warmup_steps = resolve_warmup_steps(total_steps, hp.warmup_ratio, hp.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, build_schedule(hp.lr_schedule, total_steps, warmup_steps)
        )
        run = Run(
            model=model,
            rows=rows,
            pad_id=pad_id,
            eval_features=eval_features,
            eval_batches=eval_batches,
            encoder_parameters=encoder_parameters,
            optimizer=optimizer,
            scheduler=scheduler,
            trainable=[p for group in optimizer.param_groups for p in group["params"]],
            steps_per_epoch=steps_per_epoch,
            cached=cached,
            eval_cached=eval_cached,
        )

        self.state = TrainerState(total_steps=total_steps, num_epochs=hp.epochs)
        self._notify("on_train_begin")
        logger.info(
            "training %s %s on %d rows (+%d replayed per epoch), %d eval rows, %d steps, "
            "%d trainable tensors, %s on %s",
            self.task.name,
            self.strategy.name,
            rows.num_train,
            replay_per_epoch,
            len(eval_features),
            total_steps,
            len(run.trainable),
            self.precision.name,
            self.device,
        )
        return run

    def _train_epoch(self, run: Run, epoch: int) -> None:
        hp, rows = self.hp, run.rows
        self.strategy.start_epoch(run.model.encoder, epoch)
        run.model.train()
        if self.strategy.uses_cached_features:
            # a frozen encoder without a feature cache (token-level heads) runs without dropout,
            # as the cached features would have been computed
            run.model.encoder.eval()
        epoch_rows = list(range(rows.num_train)) + [
            rows.num_train + i
            for i in sample_replay_rows(rows.num_replay, hp.replay_fraction, hp.seed + epoch)
        ]
        for step_rows in grouped_batches_of(
            epoch_rows, rows.lengths, hp.batch_size, seed=hp.seed + epoch
        ):
            micro_batches = [
                self._micro_batch(micro, run)
                for micro in split_micro_batches(step_rows, hp.micro_batch_size or hp.batch_size)
            ]
            loss = self._step(run, micro_batches)
            run.scheduler.step()
            run.processed_rows += len(step_rows)
            self._record_step(epoch, run.steps_per_epoch, loss, run.scheduler)

    def _end_epoch(self, run: Run, epoch: int) -> bool:
        """Evaluate, keep the best epoch's tensors, and return True to stop early."""
        hp = self.hp
        metrics = self._evaluate_epoch(run)
        metrics["epoch"] = epoch + 1
        self.state.eval_history.append(metrics)
        self._notify("on_evaluate", metrics)

        score = metrics[hp.metric_for_best_model]
        if self.state.best_metric is None or score > self.state.best_metric:
            self.state.best_metric = score
            self.state.best_epoch = epoch + 1
            run.best_metrics = metrics
            run.best_snapshot = {
                name: p.detach().clone()
                for name, p in run.model.named_parameters()
                if name.removeprefix("encoder.") in run.encoder_parameters
                or name.startswith("head.")
            }
            run.stale_epochs = 0
            return False

        run.stale_epochs += 1
        if hp.early_stopping_patience and run.stale_epochs >= hp.early_stopping_patience:
            logger.info(
                "stopping early after epoch %d: %s has not improved for %d evaluations",
                epoch + 1,
                hp.metric_for_best_model,
                run.stale_epochs,
            )
            return True
        return False

    # one step

    def _micro_batch(self, micro: list[int], run: Run) -> PaddedBatch | FeatureBatch:
        features = run.rows.features
        if run.cached is None:
            return make_batch(micro, features, run.pad_id, self.device)
        return self._feature_batch(micro, features)

    def _feature_batch(self, rows: list[int], features: Features) -> FeatureBatch:
        index = torch.tensor(rows)
        assert isinstance(features.targets, torch.Tensor), "pooled task types only"
        return FeatureBatch(
            rows,
            index.to(self.device),
            features.targets.index_select(0, index).to(self.device),
            float(sum(features.units[i] for i in rows)),
        )

    def _outputs(
        self, model: TaskModel, batch: PaddedBatch | FeatureBatch, cached: torch.Tensor | None
    ) -> torch.Tensor:
        if isinstance(batch, FeatureBatch):
            assert cached is not None
            return model.head(cached.index_select(0, batch.index))
        route = self.strategy.route(len(batch.rows), self.device)
        with self.precision.autocast():
            return model(batch.input_ids, batch.attention_mask, route, batch.token_type_ids)

    def _step(self, run: Run, micro_batches: list) -> torch.Tensor:
        """Run one optimizer step and return its mean loss as a tensor, without a host sync."""
        hp, optimizer = self.hp, run.optimizer
        scaler = self.precision.scaler
        total = torch.zeros((), device=self.device)

        # forward and backward: each micro-batch's summed loss is divided by the step's loss
        # units, so the micro-batches add up to exactly the gradient of one batch of all rows
        step_units = max(sum(batch.units for batch in micro_batches), 1.0)
        for batch in micro_batches:
            outputs = self._outputs(run.model, batch, run.cached)
            mask = batch.attention_mask if isinstance(batch, PaddedBatch) else None
            loss = self.task.loss_sum(outputs, batch.targets, mask) / step_units
            (scaler.scale(loss) if scaler is not None else loss).backward()
            total += loss.detach()

        # clipping, the update, then the anchor penalties' own step
        if scaler is not None:
            scaler.unscale_(optimizer)
        if hp.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(run.trainable, hp.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for penalty in self.penalties:
            penalty.step(optimizer)
        return total

    def _record_step(
        self,
        epoch: int,
        steps_per_epoch: int,
        loss: torch.Tensor,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> None:
        # Losses are read back from the device only every `log_every` steps.
        state = self.state
        state.step += 1
        state.epoch = epoch + (state.step - epoch * steps_per_epoch) / steps_per_epoch
        self._running_losses.append(loss)
        if state.step % self.log_every == 0 or state.step == state.total_steps:
            state.loss = float(torch.stack(self._running_losses).mean())
            state.learning_rate = scheduler.get_last_lr()[-1]
            self._running_losses = []
            self._notify("on_log")

    # evaluation and export

    def _features(self, model: TaskModel, features: Features) -> torch.Tensor:
        return compute_features(
            model,
            features,
            self.tokenizer.pad_token_id,
            self.precision,
            lambda size: self.strategy.route(size, self.device),
        )

    def _evaluate_epoch(self, run: Run) -> dict[str, float]:
        started = time.perf_counter()
        model, eval_cached, eval_features = run.model, run.eval_cached, run.eval_features
        model.eval()
        if eval_cached is None:
            batches: list = run.eval_batches
        else:
            batches = [
                self._feature_batch(
                    list(range(start, min(start + EVAL_BATCH_SIZE, len(eval_features)))),
                    eval_features,
                )
                for start in range(0, len(eval_features), EVAL_BATCH_SIZE)
            ]
        metrics = evaluate(
            lambda batch: self._outputs(model, batch, eval_cached),
            batches,
            eval_features,
            self.task,
        )
        self._eval_seconds += time.perf_counter() - started
        return metrics

    def _finish(self, run: Run, started: float) -> TrainingResult:
        model, best_metrics = run.model, run.best_metrics
        update = self.strategy.export(model.encoder, self.spec)
        head = {name: p.detach().float().cpu().clone() for name, p in model.head.named_parameters()}
        delta = Delta(
            strategy=self.strategy.name,
            task_type=self.task.name,
            labels=list(self.labels),
            base_fingerprint=self.fingerprint,
            pooling=self.spec.pooling,
            max_length=self.hp.max_length,
            head=head,
            extra=self.task.delta_extra(),
            **update.delta_fields(),
        )
        metrics = {k: v for k, v in best_metrics.items() if k != "epoch"}
        report = dict(update.report)

        # a compressed dense update is measured again as served, and a kept one by its memory
        if "compression_relative_frobenius_error" in report:
            eval_started = time.perf_counter()
            served = evaluate_served(
                self.spec, delta, run.eval_batches, run.eval_features, self.task, self.precision
            )
            self._eval_seconds += time.perf_counter() - eval_started
            for name, value in metrics.items():
                report[f"{name}_before_compression"] = value
            metrics = served
            logger.info(
                "compressed to rank %d: relative Frobenius error %.4f, %s before, %s after",
                report["compression_rank"],
                report["compression_relative_frobenius_error"],
                best_metrics,
                served,
            )
        if delta.dense:
            report["dense_memory_bytes"] = float(
                encoder_nbytes(build_dedicated_encoder(self.spec, delta))
            )

        self._notify("on_train_end")
        total_seconds = time.perf_counter() - started
        train_seconds = max(total_seconds - self._eval_seconds, 1e-9)
        return TrainingResult(
            delta=delta,
            metrics=metrics,
            best_epoch=self.state.best_epoch or self.hp.epochs,
            train_seconds=train_seconds,
            train_samples_per_second=run.processed_rows / train_seconds,
            report=report,
            total_seconds=total_seconds,
        )

    def _notify(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self.state, *args)
