from collections import Counter

from worker.trainer.data import length_grouped_batches, pad_batch, stratified_split
from worker.trainer.schedule import warmup_linear_decay


def test_stratified_split_keeps_label_shares():
    labels = ["a"] * 90 + ["b"] * 10

    train, held_out = stratified_split(labels, fraction=0.1, seed=0)

    assert sorted(train + held_out) == list(range(100))
    assert Counter(labels[i] for i in held_out) == {"a": 9, "b": 1}


def test_stratified_split_is_seeded():
    labels = ["a", "b"] * 50

    assert stratified_split(labels, 0.2, seed=3) == stratified_split(labels, 0.2, seed=3)
    assert stratified_split(labels, 0.2, seed=3) != stratified_split(labels, 0.2, seed=4)


def test_length_grouped_batches_cover_every_row_once():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]

    batches = length_grouped_batches(lengths, batch_size=32, seed=0)

    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert all(len(batch) <= 32 for batch in batches)


def test_length_grouped_batches_reduce_padding():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=32, seed=0)

    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padded < 1.2 * sum(lengths)


def test_pad_batch_masks_padding():
    input_ids, attention_mask = pad_batch([[1, 2, 3], [4]], pad_id=0)

    assert input_ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_warmup_then_linear_decay():
    multiplier = warmup_linear_decay(total_steps=100, warmup_steps=9)

    assert multiplier(0) == 0.1
    assert multiplier(8) == 0.9
    assert multiplier(9) == 1.0
    assert abs(multiplier(54) - 0.5055) < 1e-3
    assert multiplier(100) == 0.0
