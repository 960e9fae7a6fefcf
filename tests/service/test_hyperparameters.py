"""Job hyperparameters: values that JSON allows but no job can mean are refused."""

import pytest
from pydantic import ValidationError

from service.hyperparameters import parse_hyperparameters


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"l2sp_lambda": float("inf")}, "l2sp_lambda"),
        ({"learning_rate": True}, "learning_rate"),
        ({"epochs": True}, "epochs"),
        ({"seed": 2**64}, "seed"),
        ({"threshold": 1.5}, "threshold"),
        ({"metric_for_best_model": 3}, "metric_for_best_model"),
    ],
)
def test_nonsense_values_rejected_with_their_field(values: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_hyperparameters("lora", values)

    assert [error["loc"][0] for error in caught.value.errors()] == [field]


def test_booleans_still_set_boolean_fields() -> None:
    hyperparameters = parse_hyperparameters("full", {"bf16": False, "keep_dense": True})

    assert hyperparameters.bf16 is False
    assert hyperparameters.keep_dense is True
