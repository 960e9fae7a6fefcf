"""Tokenisation, splits and length-grouped batches with dynamic padding."""

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from transformers import PreTrainedTokenizerFast


def tokenize(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_length: int
) -> list[list[int]]:
    """Return the token ids of each text, truncated to `max_length`, without padding."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return encoded["input_ids"]


def stratified_split(
    labels: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split row indexes into (train, eval) with `fraction` of each label held out.

    Every label with at least two rows keeps one row on each side, so no class disappears.
    """
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    train, held_out = [], []
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        count = round(len(rows) * fraction)
        if len(rows) >= 2:
            count = min(max(count, 1), len(rows) - 1)
        else:
            count = 0
        held_out.extend(rows[:count])
        train.extend(rows[count:])
    return sorted(train), sorted(held_out)


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, group_factor: int = 50
) -> list[list[int]]:
    """Return shuffled batches of row indexes whose rows have similar lengths.

    Rows are shuffled, cut into groups of `group_factor` batches, sorted by length inside each
    group and cut into batches; the batch order is shuffled again. Padding then stays small
    while every epoch still sees a different order.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group_size = batch_size * group_factor
    batches = []
    for start in range(0, len(order), group_size):
        group = sorted(order[start : start + group_size], key=lambda i: lengths[i], reverse=True)
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Return batches of row indexes sorted by length, for evaluation and inference."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists to the longest one: returns `input_ids` and `attention_mask` `[B, T]`."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    return input_ids, attention_mask


def iterate_padded(
    token_ids: Sequence[Sequence[int]], batches: list[list[int]], pad_id: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    for rows in batches:
        input_ids, attention_mask = pad_batch([token_ids[i] for i in rows], pad_id)
        yield rows, input_ids, attention_mask


def split_micro_batches(rows: list[int], micro_batch_size: int) -> list[list[int]]:
    """Cut one optimizer step's rows into consecutive micro-batches of at most that size."""
    return [rows[i : i + micro_batch_size] for i in range(0, len(rows), micro_batch_size)]


def sample_replay_rows(count: int, fraction: float, seed: int) -> list[int]:
    """Return round(fraction·count) distinct indexes out of `count`, drawn with `seed`."""
    wanted = min(count, round(fraction * count))
    return sorted(random.Random(seed).sample(range(count), wanted))


def grouped_batches_of(
    rows: Sequence[int], lengths: Sequence[int], batch_size: int, seed: int
) -> list[list[int]]:
    """Return `length_grouped_batches` over a subset `rows` of the indexes of `lengths`."""
    batches = length_grouped_batches([lengths[row] for row in rows], batch_size, seed)
    return [[rows[i] for i in batch] for batch in batches]
