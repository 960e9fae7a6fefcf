"""Prometheus text metrics of this API process: serving batches and the adapter cache."""

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=PlainTextResponse)
def read_metrics(request: Request) -> str:
    """Return serving counters in the Prometheus text format."""
    batcher = request.app.state.batcher
    lines = []
    if batcher is not None:
        cache = batcher.engine.cache
        samples = {
            ("loraplex_serving_batches_total", "counter", "Forward batches run"): batcher.batches,
            ("loraplex_serving_rows_total", "counter", "Rows served in batches"): batcher.rows,
            ("loraplex_adapters_resident", "gauge", "Adapters in the cache"): len(cache),
            ("loraplex_adapter_cache_bytes", "gauge", "Delta bytes in the cache"): cache.used_bytes,
            ("loraplex_adapter_slots", "gauge", "Slots allocated per layer"): cache.num_slots,
        }
        for (name, kind, help_text), value in samples.items():
            lines += [f"# HELP {name} {help_text}.", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"
