"""The trainer's task types: rows and targets, losses, metrics and eval splits."""

import pytest
import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score as seqeval_f1

from service.modeling.base import load_tokenizer
from service.serving.tasktypes.token_classification import predict_word_tags
from service.tasktypes.alignment import IGNORE_INDEX
from worker.trainer.tasktypes import TaskOptions, build_task_type
from worker.trainer.tasktypes.base import Features, concat_features
from worker.trainer.tasktypes.extractive_qa import group_split

TAGS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def test_pair_rows_carry_segment_ids(tokenizer):
    task = build_task_type("sentence_pair", ["0", "1"], TaskOptions(max_length=16))
    examples = [
        {"text": "the cat sat on the mat", "text_pair": "a cat sat", "label": "1"},
        {"text": "stocks fell", "text_pair": "the weather is fine today", "label": "0"},
    ]

    features = task.featurize(tokenizer, examples)

    assert features.targets.tolist() == [1, 0]
    assert features.token_type_ids is not None
    for ids, types in zip(features.token_ids, features.token_type_ids, strict=True):
        assert len(ids) == len(types) <= 16
        assert types[0] == 0 and types[-1] == 1


def test_pair_metrics_add_positive_f1():
    task = build_task_type("sentence_pair", ["0", "1"], TaskOptions(max_length=16))
    features = Features([[1]] * 4, None, torch.tensor([1, 1, 0, 0]), [1.0] * 4)
    outputs = [torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    outputs.append(torch.tensor([1.0, 0.0]))

    metrics = task.compute_metrics(features, outputs)

    assert metrics["accuracy"] == 0.5
    assert metrics["f1"] == pytest.approx(0.5)


def test_multi_label_loss_is_mean_over_labels(tokenizer):
    task = build_task_type("multi_label", ["a", "b", "c"], TaskOptions(max_length=16))
    features = task.featurize(
        tokenizer, [{"text": "x", "labels": ["a", "c"]}, {"text": "y", "labels": []}]
    )
    outputs = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]])

    loss = task.loss_sum(outputs, features.targets, torch.ones(2, 3)) / 2

    assert features.targets.tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    expected = F.binary_cross_entropy_with_logits(outputs, features.targets)
    assert loss.item() == pytest.approx(expected.item())


def test_multi_label_threshold_decides_metrics_and_delta():
    task = build_task_type("multi_label", ["a", "b"], TaskOptions(max_length=16, threshold=0.8))
    features = Features([[1], [1]], None, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [1.0, 1.0])
    # sigmoid(1.0) = 0.73 is under the threshold, sigmoid(2.0) = 0.88 over it.
    outputs = [torch.tensor([2.0, -5.0]), torch.tensor([-5.0, 1.0])]

    metrics = task.compute_metrics(features, outputs)

    assert metrics["micro_f1"] == pytest.approx(2 / 3)
    assert metrics["subset_accuracy"] == 0.5
    assert task.delta_extra() == {"threshold": "0.8"}


def test_regression_trains_on_standardised_targets(tokenizer):
    task = build_task_type("regression", [], TaskOptions(max_length=16))
    train = [{"text": "a", "target": 1.0}, {"text": "b", "target": 3.0}]
    task.fit(train)

    features = task.featurize(tokenizer, train + [{"text": "c", "target": 5.0}])
    metrics = task.compute_metrics(
        features, [torch.tensor([-1.0]), torch.tensor([1.0]), torch.tensor([3.0])]
    )

    assert task.num_outputs == 1
    assert features.targets.tolist() == [-1.0, 1.0, 3.0]
    assert metrics["mse"] == pytest.approx(0.0)
    assert metrics["pearson"] == pytest.approx(1.0)
    assert task.delta_extra() == {"target_mean": "2.0", "target_std": "1.0", "text_pair": "false"}


def test_regression_rejects_mixed_pairs(tokenizer):
    task = build_task_type("regression", [], TaskOptions(max_length=16))
    task.fit([{"text": "a", "text_pair": "b", "target": 1.0}])

    with pytest.raises(ValueError, match="training dataset has text pairs"):
        task.featurize(tokenizer, [{"text": "a", "target": 1.0}])


def test_ner_labels_first_subtoken_only(tokenizer):
    task = build_task_type("token_classification", TAGS, TaskOptions(max_length=32))
    example = {
        "tokens": ["Ekeusmerkelstein", "visited", "Baghdad"],
        "tags": ["B-PER", "O", "B-LOC"],
    }

    features = task.featurize(tokenizer, [example])

    (labels,) = features.targets
    window = features.plan[0].windows[0]
    assert labels[0] == labels[-1] == IGNORE_INDEX  # [CLS] and [SEP]
    first = [
        position
        for position, word in enumerate(window.word_ids)
        if word is not None and (position == 0 or window.word_ids[position - 1] != word)
    ]
    assert [labels[p] for p in first] == [2, 0, 1]
    assert sum(label != IGNORE_INDEX for label in labels) == 3
    assert window.word_ids.count(0) > 1, "the first word should have several sub-tokens"
    assert features.units == [3.0]


def test_ner_long_sentence_split_into_windows(tokenizer):
    task = build_task_type("token_classification", TAGS, TaskOptions(max_length=12, doc_stride=3))
    tokens = [f"w{index}" for index in range(30)]
    tags = ["B-LOC" if index % 5 == 0 else "O" for index in range(30)]

    features = task.featurize(tokenizer, [{"tokens": tokens, "tags": tags}])

    assert len(features) > 3
    assert all(len(ids) <= 12 for ids in features.token_ids)
    covered = {
        word for window in features.plan[0].windows for word in window.word_ids if word is not None
    }
    assert covered == set(range(30))
    assert task.delta_extra() == {"doc_stride": "3"}


def test_ner_metrics_match_seqeval(tokenizer):
    task = build_task_type("token_classification", TAGS, TaskOptions(max_length=12, doc_stride=3))
    examples = [
        {"tokens": [f"w{i}" for i in range(20)], "tags": (["B-PER", "I-PER", "O", "B-LOC"] * 5)},
        {"tokens": ["Paris", "is", "big"], "tags": ["B-LOC", "O", "O"]},
    ]
    features = task.featurize(tokenizer, examples)
    generator = torch.Generator().manual_seed(0)
    outputs = [torch.randn(len(ids), len(TAGS), generator=generator) for ids in features.token_ids]

    metrics = task.compute_metrics(features, outputs)

    predicted = []
    for sentence in features.plan:
        rows = outputs[sentence.first_row : sentence.first_row + len(sentence.windows)]
        words = predict_word_tags(sentence.windows, rows, len(sentence.tags))
        predicted.append([TAGS[w[0]] for w in words])
    gold = [e["tags"] for e in examples]
    assert metrics["entity_f1"] == pytest.approx(seqeval_f1(gold, predicted))
    assert set(metrics) == {"entity_precision", "entity_recall", "entity_f1"}


def test_ner_unknown_tags_listed_and_rejected(tokenizer):
    task = build_task_type("token_classification", TAGS, TaskOptions(max_length=12))
    examples = [{"tokens": ["IBM", "in", "Paris"], "tags": ["B-ORG", "O", "B-LOC"]}]

    assert task.unknown_labels(examples) == ["B-ORG"]
    with pytest.raises(ValueError, match=r"tags \['B-ORG'\] are not among"):
        task.featurize(tokenizer, examples)


def qa_example(context: str, answer: str | None, title: str = "t", question: str = "What?"):
    answers = []
    if answer is not None:
        answers = [{"text": answer, "answer_start": context.index(answer)}]
    return {
        "id": question,
        "question": question,
        "context": context,
        "answers": answers,
        "title": title,
    }


def test_qa_windows_labelled_with_answer_or_cls(tokenizer):
    options = TaskOptions(max_length=32, doc_stride=8, max_question_tokens=8)
    task = build_task_type("extractive_qa", [], options)
    filler = " ".join(f"word{index}" for index in range(30))
    context = f"{filler} the answer is Ulaanbaatar city. {filler}"

    features = task.featurize(tokenizer, [qa_example(context, "Ulaanbaatar city")])

    windows = features.plan[0].windows
    assert len(windows) == len(features) > 2
    answered = 0
    for window, (start, end) in zip(windows, features.targets.tolist(), strict=True):
        if start == window.cls_index:
            assert end == window.cls_index
            continue
        answered += 1
        assert context[window.offsets[start][0] : window.offsets[end][1]] == "Ulaanbaatar city"
    assert answered >= 1
    assert features.token_type_ids is not None


def test_qa_loss_ignores_padding(tokenizer):
    task = build_task_type(
        "extractive_qa", [], TaskOptions(max_length=32, doc_stride=8, max_question_tokens=8)
    )
    outputs = torch.zeros(1, 6, 2)
    outputs[0, 4:, :] = 50.0  # huge logits on the two padding positions
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    targets = torch.tensor([[1, 2]])

    loss = task.loss_sum(outputs, targets, mask)

    assert loss.item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), rel=1e-5)


def test_qa_metrics_use_best_span_over_windows(tokenizer):
    options = TaskOptions(max_length=32, doc_stride=8, max_question_tokens=8, max_answer_tokens=8)
    task = build_task_type("extractive_qa", [], options)
    filler = " ".join(f"word{index}" for index in range(30))
    context = f"{filler} the answer is Ulaanbaatar city. {filler}"
    features = task.featurize(tokenizer, [qa_example(context, "Ulaanbaatar city")])
    outputs = []
    for window, (start, end) in zip(
        features.plan[0].windows, features.targets.tolist(), strict=True
    ):
        logits = torch.zeros(len(window.input_ids), 2)
        logits[start, 0] = 10.0
        logits[end, 1] = 10.0
        outputs.append(logits)

    metrics = task.compute_metrics(features, outputs)

    assert metrics == {"exact_match": 1.0, "f1": 1.0}


def test_qa_split_holds_out_whole_articles():
    examples = [qa_example(f"context {i}", None, title=f"article {i % 5}") for i in range(50)]
    task = build_task_type("extractive_qa", [], TaskOptions(max_length=32))

    train, held = task.split(examples, 0.2, seed=0)

    assert sorted(train + held) == list(range(50))
    train_titles = {examples[i]["title"] for i in train}
    held_titles = {examples[i]["title"] for i in held}
    assert not train_titles & held_titles
    assert len(held) == 10


def test_group_split_keeps_one_group_for_training():
    assert group_split(["a", "a", "b"], 0.9, seed=1)[0]
    assert group_split(["a", "a"], 0.5, seed=1) == ([0, 1], [])


def test_replayed_rows_appended_with_zero_segments(tokenizer):
    pairs = build_task_type("regression", [], TaskOptions(max_length=16))
    pairs.fit([{"text": "a", "text_pair": "b", "target": 1.0}])
    first = pairs.featurize(tokenizer, [{"text": "a", "text_pair": "b", "target": 1.0}])
    singles = build_task_type("regression", [], TaskOptions(max_length=16))
    singles.fit([{"text": "a", "target": 2.0}])
    second = singles.featurize(tokenizer, [{"text": "c d", "target": 2.0}])

    both = concat_features(first, second)

    assert len(both) == 2
    assert both.token_type_ids[1] == [0] * len(both.token_ids[1])
    assert both.targets.shape == (2,)
