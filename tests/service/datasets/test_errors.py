import pickle

from service.datasets import DatasetError, UnsupportedTaskType


def test_dataset_error_message_with_location():
    exc = DatasetError(
        "the label is empty. Every row needs a label.", filename="train.tsv", line=12, field="label"
    )

    assert (
        str(exc)
        == "train.tsv, line 12, field 'label': the label is empty. Every row needs a label."
    )
    assert exc.message == "the label is empty. Every row needs a label."
    assert exc.filename == "train.tsv"
    assert exc.line == 12
    assert exc.field == "label"


def test_dataset_error_message_without_line():
    exc = DatasetError("the file contains no rows.", filename="train.csv")

    assert str(exc) == "train.csv: the file contains no rows."
    assert exc.line is None
    assert exc.field is None


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)
    assert issubclass(UnsupportedTaskType, DatasetError)


def test_dataset_error_survives_pickling():
    exc = UnsupportedTaskType(
        "task type 'ner' is not supported.", filename="a.csv", field="task_type"
    )

    restored = pickle.loads(pickle.dumps(exc))

    assert type(restored) is UnsupportedTaskType
    assert str(restored) == str(exc)
    assert restored.filename == "a.csv"
    assert restored.line is None
    assert restored.field == "task_type"
