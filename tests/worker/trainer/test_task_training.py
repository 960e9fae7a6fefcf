"""Training every task type on the tiny BERT, and serving what it trained.

Runs are in fp32, so that the metrics the trainer reports can be compared with the same
metrics computed from the serving engine's predictions.
"""

from pathlib import Path

import pytest
import torch

from service.modeling.delta import serialize_delta
from service.serving.engine import ServingEngine
from service.serving.tasktypes import get_serving_task_type
from service.tasktypes.metrics import (
    entity_scores,
    multi_label_scores,
    regression_scores,
    squad_scores,
)
from service.tasktypes.multi_label import encode_label_set
from tests.utils.settings import local_settings
from tests.utils.task_data import (
    NER_TAGS,
    TOPIC_KEYWORDS,
    ner_examples,
    pair_examples,
    qa_examples,
    rating_examples,
    topic_examples,
)
from tests.worker.trainer import helpers
from worker.promotion import evaluate_adapter
from worker.trainer.loop import Trainer

TOPICS = sorted(TOPIC_KEYWORDS)
QA_OPTIONS = {"max_length": 48, "doc_stride": 16, "max_question_tokens": 12}


def make_trainer(
    model_dir: Path,
    task_type: str,
    train: list[dict],
    eval_: list[dict],
    labels: list[str],
    strategy: str = "lora",
    init_delta=None,
    init_examples=None,
    **overrides,
) -> Trainer:
    return helpers.make_trainer(
        model_dir,
        strategy,
        train,
        eval_,
        tuple(labels),
        init_delta=init_delta,
        init_examples=init_examples,
        task_type=task_type,
        **{"batch_size": 8, "learning_rate": 0.01, "head_learning_rate": 0.01, **overrides},
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ServingEngine:
    data_dir = tmp_path_factory.mktemp("serving")
    settings = local_settings(data_dir, tiny_model_dir, preload_tasks=0, serve_dtype="float32")
    return ServingEngine(settings)


def serve(engine: ServingEngine, delta, inputs: list) -> list[dict]:
    """Return the engine's predictions for `inputs` from `delta`, loaded into a slot."""
    key = f"test-{id(delta)}"
    loaded = engine.cache.put(key, "task", 1, delta)
    try:
        task_type = get_serving_task_type(delta.task_type)
        items = [(loaded, task_type.parse_input_for(loaded, item)) for item in inputs]
        return engine.run_items(items)
    finally:
        engine.cache.evict(key)


def test_sentence_pair_served_accuracy_matches(tiny_model_dir, engine):
    train, eval_ = pair_examples(64, seed=0), pair_examples(24, seed=1)
    trainer = make_trainer(tiny_model_dir, "sentence_pair", train, eval_, ["different", "same"])

    result = trainer.fit()
    served = serve(
        engine, result.delta, [{"text": e["text"], "text_pair": e["text_pair"]} for e in eval_]
    )

    assert result.delta.task_type == "sentence_pair"
    assert set(result.metrics) == {"accuracy", "macro_f1", "f1"}
    correct = sum(p["label"] == e["label"] for p, e in zip(served, eval_, strict=True))
    assert correct / len(eval_) == pytest.approx(result.metrics["accuracy"], abs=0.05)


def test_multi_label_threshold_reaches_serving(tiny_model_dir, engine):
    train, eval_ = topic_examples(64, seed=0), topic_examples(24, seed=1)
    trainer = make_trainer(tiny_model_dir, "multi_label", train, eval_, TOPICS, threshold=0.3)

    result = trainer.fit()
    served = serve(engine, result.delta, [e["text"] for e in eval_])

    assert result.delta.extra == {"threshold": "0.3"}
    assert trainer.hp.metric_for_best_model == "micro_f1"
    probabilities = [[p["scores"][label] for label in TOPICS] for p in served]
    references = [encode_label_set(e["labels"], TOPICS) for e in eval_]
    scores = multi_label_scores(probabilities, references, threshold=0.3)
    assert scores["micro_f1"] == pytest.approx(result.metrics["micro_f1"], abs=1e-3)
    assert all(p["labels"] == [t for t in TOPICS if p["scores"][t] >= 0.3] for p in served)


def test_regression_learns_and_serves_in_target_units(tiny_model_dir, engine):
    train, eval_ = rating_examples(96, seed=0), rating_examples(32, seed=1)
    trainer = make_trainer(tiny_model_dir, "regression", train, eval_, [], epochs=4)

    result = trainer.fit()
    served = serve(engine, result.delta, [e["text"] for e in eval_])

    assert result.metrics["pearson"] > 0.5
    values = [p["value"] for p in served]
    scores = regression_scores(values, [e["target"] for e in eval_])
    assert scores["pearson"] == pytest.approx(result.metrics["pearson"], abs=1e-3)
    assert scores["mse"] == pytest.approx(result.metrics["mse"], rel=1e-2)


def test_ner_learns_and_serves_same_entities(tiny_model_dir, engine):
    train, eval_ = ner_examples(96, seed=0), ner_examples(24, seed=1)
    # max_length 16 splits most sentences into windows. LoRA at 0.01 collapses the tiny
    # model's token states, which a token-level head cannot recover from.
    trainer = make_trainer(
        tiny_model_dir,
        "token_classification",
        train,
        eval_,
        NER_TAGS,
        max_length=16,
        epochs=4,
        learning_rate=0.003,
    )

    result = trainer.fit()
    served = serve(engine, result.delta, [{"tokens": e["tokens"]} for e in eval_])

    assert set(result.metrics) == {"entity_precision", "entity_recall", "entity_f1"}
    assert result.metrics["entity_f1"] > 0.5
    assert result.delta.extra == {"doc_stride": "4"}
    scores = entity_scores([e["tags"] for e in eval_], [p["tags"] for p in served])
    assert scores["f1"] == pytest.approx(result.metrics["entity_f1"], abs=0.02)
    # The if_better promotion policy scores a stored version the same way.
    stored = evaluate_adapter(engine.settings, serialize_delta(result.delta), eval_)
    assert stored["entity_f1"] == pytest.approx(scores["f1"])


def test_qa_learns_and_serves_same_answers(tiny_model_dir, engine):
    train, eval_ = qa_examples(96, seed=0), qa_examples(24, seed=1)
    trainer = make_trainer(
        tiny_model_dir,
        "extractive_qa",
        train,
        eval_,
        [],
        epochs=4,
        learning_rate=0.003,
        **QA_OPTIONS,
    )

    result = trainer.fit()
    served = serve(
        engine,
        result.delta,
        [{"question": e["question"], "context": e["context"]} for e in eval_],
    )

    assert set(result.metrics) == {"exact_match", "f1"}
    assert result.delta.extra == {
        "doc_stride": "16",
        "max_question_tokens": "12",
        "max_answer_tokens": "30",
    }
    scores = squad_scores(
        [p["answer"] for p in served], [[a["text"] for a in e["answers"]] for e in eval_]
    )
    assert scores["f1"] == pytest.approx(result.metrics["f1"], abs=0.05)
    for prediction, example in zip(served, eval_, strict=True):
        assert prediction["answer"] == example["context"][prediction["start"] : prediction["end"]]


def test_ner_loss_is_mean_over_labelled_tokens_across_micro_batches(no_dropout_model_dir):
    train = ner_examples(24, seed=0)

    def trained_head(**options) -> torch.Tensor:
        trainer = make_trainer(
            no_dropout_model_dir,
            "token_classification",
            train,
            train[:4],
            NER_TAGS,
            epochs=1,
            head_dropout=0.0,
            lora_dropout=0.0,
            **options,
        )
        return trainer.fit().delta.head["classifier.weight"]

    whole = trained_head()
    accumulated = trained_head(micro_batch_size=3)

    assert torch.allclose(whole, accumulated, atol=1e-5)


@pytest.mark.parametrize("task_type", ["token_classification", "extractive_qa"])
def test_linear_probe_of_token_level_type_trains_head_only(tiny_model_dir, task_type):
    if task_type == "token_classification":
        train, eval_, labels, options = ner_examples(32, 0), ner_examples(8, 1), NER_TAGS, {}
    else:
        train, eval_, labels, options = qa_examples(32, 0), qa_examples(8, 1), [], QA_OPTIONS
    trainer = make_trainer(
        tiny_model_dir, task_type, train, eval_, labels, strategy="linear_probe", **options
    )

    result = trainer.fit()

    assert not result.delta.has_encoder_update
    assert result.delta.head["classifier.weight"].shape[0] == (len(labels) or 2)


def test_linear_probe_of_multi_label_uses_cached_features(tiny_model_dir, engine):
    train, eval_ = topic_examples(64, seed=0), topic_examples(16, seed=1)
    trainer = make_trainer(
        tiny_model_dir, "multi_label", train, eval_, TOPICS, strategy="linear_probe", epochs=5
    )

    result = trainer.fit()
    served = serve(engine, result.delta, [e["text"] for e in eval_])

    probabilities = [[p["scores"][label] for label in TOPICS] for p in served]
    references = [encode_label_set(e["labels"], TOPICS) for e in eval_]
    scores = multi_label_scores(probabilities, references)
    assert scores["micro_f1"] == pytest.approx(result.metrics["micro_f1"], abs=1e-3)


def test_compressed_dense_ner_update_evaluated_as_served(deep_tiny_model_dir):
    train, eval_ = ner_examples(32, seed=0), ner_examples(8, seed=1)
    trainer = make_trainer(
        deep_tiny_model_dir,
        "token_classification",
        train,
        eval_,
        NER_TAGS,
        strategy="freeze_bottom",
        frozen_blocks=3,
        svd_rank=4,
    )

    result = trainer.fit()

    assert "entity_f1_before_compression" in result.report
    assert set(result.metrics) == {"entity_precision", "entity_recall", "entity_f1"}


def test_regression_continues_with_replay_and_ewc(tiny_model_dir):
    first = make_trainer(
        tiny_model_dir, "regression", rating_examples(32, 0), rating_examples(8, 1), []
    ).fit()
    init_examples = rating_examples(32, 0)

    second = make_trainer(
        tiny_model_dir,
        "regression",
        rating_examples(32, 2),
        rating_examples(8, 3),
        [],
        init_delta=first.delta,
        init_examples=init_examples,
        init_from={"task": "ratings", "version": 1},
        replay_fraction=0.5,
        ewc_lambda=1.0,
        ewc_fisher_samples=8,
    ).fit()

    assert set(second.metrics) == {"pearson", "spearman", "mse"}


def test_ewc_rejects_init_from_of_other_task_type(tiny_model_dir):
    first = make_trainer(
        tiny_model_dir, "regression", rating_examples(16, 0), rating_examples(4, 1), [], epochs=1
    ).fit()
    trainer = make_trainer(
        tiny_model_dir,
        "multi_label",
        topic_examples(16, 0),
        topic_examples(4, 1),
        TOPICS,
        init_delta=first.delta,
        init_examples=rating_examples(16, 0),
        init_from={"task": "ratings", "version": 1},
        ewc_lambda=1.0,
    )

    with pytest.raises(ValueError, match="it is a regression version"):
        trainer.fit()


def test_max_length_beyond_positions_rejected(tiny_model_dir):
    with pytest.raises(ValueError, match="more than the base model's 128 positions"):
        make_trainer(tiny_model_dir, "extractive_qa", qa_examples(4, 0), qa_examples(2, 1), [])
