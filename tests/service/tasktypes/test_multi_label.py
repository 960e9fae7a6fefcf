"""Multi-label target vectors and the threshold decision rule."""

import pytest

from service.tasktypes.multi_label import encode_label_set, select_labels


def test_label_set_encoded_as_indicators():
    assert encode_label_set(["c", "a"], ["a", "b", "c"]) == [1.0, 0.0, 1.0]
    assert encode_label_set([], ["a", "b"]) == [0.0, 0.0]


def test_label_set_unknown_label_rejected():
    with pytest.raises(ValueError, match="label 'z' is not one of the task's labels"):
        encode_label_set(["z"], ["a"])


def test_labels_selected_at_threshold_inclusive():
    probabilities = [0.2, 0.5, 0.9, 0.49]

    assert select_labels(probabilities) == [1, 2]
    assert select_labels(probabilities, threshold=0.1) == [0, 1, 2, 3]
    assert select_labels(probabilities, threshold=0.95) == []
