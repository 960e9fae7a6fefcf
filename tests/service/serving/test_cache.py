import pytest
import torch

from service.modeling.base import build_encoder, read_base_model_spec
from service.serving.cache import AdapterCache
from tests.service.serving.utils import make_delta


@pytest.fixture
def encoder(tiny_model_dir):
    return build_encoder(read_base_model_spec(tiny_model_dir))


def test_cache_evicts_least_recently_used_over_budget(encoder):
    nbytes = make_delta(encoder).nbytes
    cache = AdapterCache(encoder, budget_bytes=2 * nbytes)
    cache.put("one", "t1", 1, make_delta(encoder, seed=1))
    cache.put("two", "t2", 1, make_delta(encoder, seed=2))
    cache.get("one")

    cache.put("three", "t3", 1, make_delta(encoder, seed=3))

    assert set(cache.entries) == {"one", "three"}
    assert cache.used_bytes == 2 * nbytes


def test_cache_never_evicts_pinned_adapter(encoder):
    nbytes = make_delta(encoder).nbytes
    cache = AdapterCache(encoder, budget_bytes=nbytes)
    cache.put("pinned", "t1", 1, make_delta(encoder, seed=1)).pinned = True

    cache.put("other", "t2", 1, make_delta(encoder, seed=2))
    cache.put("third", "t3", 1, make_delta(encoder, seed=3))

    assert "pinned" in cache.entries
    assert "third" in cache.entries
    assert "other" not in cache.entries


def test_cache_never_evicts_adapter_in_use(encoder):
    nbytes = make_delta(encoder).nbytes
    cache = AdapterCache(encoder, budget_bytes=nbytes)
    cache.put("busy", "t1", 1, make_delta(encoder, seed=1)).in_use = 1

    cache.put("next", "t2", 1, make_delta(encoder, seed=2))

    assert {"busy", "next"} <= set(cache.entries)


def test_evicted_slot_is_reused_clean(encoder):
    nbytes = make_delta(encoder).nbytes
    cache = AdapterCache(encoder, budget_bytes=nbytes)
    first = cache.put("one", "t1", 1, make_delta(encoder, seed=1))
    slot = first.slot

    second = cache.put("two", "t2", 1, make_delta(encoder, rank=2, seed=2))

    assert second.slot == slot
    layer = next(iter(encoder.adapted_layers(["query"]).values()))
    assert torch.count_nonzero(layer.slot_A[slot, 2:]) == 0


def test_cache_grows_slot_tables_past_initial_size(encoder):
    cache = AdapterCache(encoder, budget_bytes=1 << 30)

    loaded = [cache.put(f"a{i}", f"t{i}", 1, make_delta(encoder, seed=i)) for i in range(20)]

    assert len({entry.slot for entry in loaded}) == 20
    assert 0 not in {entry.slot for entry in loaded}
    assert cache.num_slots >= 21


def test_low_rank_delta_is_charged_its_padded_slot(encoder):
    wide = make_delta(encoder, rank=8, seed=1)
    narrow = make_delta(encoder, rank=2, seed=2)
    cache = AdapterCache(encoder, budget_bytes=10 * wide.nbytes)
    cache.put("wide", "t1", 1, wide)

    cache.put("narrow", "t2", 1, narrow)

    # Both hold a rank-8 slot, so the narrow one costs what the wide one does.
    assert narrow.nbytes < wide.nbytes
    assert cache.used_bytes == 2 * wide.nbytes


def test_budget_counts_padding_when_evicting(encoder):
    wide = make_delta(encoder, rank=8, seed=1)
    cache = AdapterCache(encoder, budget_bytes=int(1.5 * wide.nbytes))
    cache.put("wide", "t1", 1, wide)

    cache.put("narrow", "t2", 1, make_delta(encoder, rank=2, seed=2))

    assert set(cache.entries) == {"narrow"}
    assert cache.used_bytes <= cache.budget_bytes
