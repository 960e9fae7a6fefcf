import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from sqlalchemy import select
from transformers import AutoModel

from service.modeling.delta import Delta
from service.modeling.peft_format import lora_from_peft_state_dict, peft_scale
from service.registry.models import Task
from service.serving.engine import ServingEngine
from service.serving.errors import AdapterIncompatible, TaskNotFound, TaskNotReady
from tests.service.serving.utils import make_delta, register_delta

TEXTS = [
    "a great film",
    "terrible, just terrible acting",
    "fine",
    "what a ride!!",
    "meh",
    "the plot has holes you could drive a truck through",
]


def build_peft_adapters(model_dir, count):
    """Return a peft model with `count` random LoRA adapters, and their heads."""
    torch.manual_seed(0)
    base = AutoModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"])
    model = get_peft_model(base, config, adapter_name="a0")
    for index in range(1, count):
        model.add_adapter(f"a{index}", config)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.3)
    heads = [torch.nn.Linear(base.config.hidden_size, 2 + index % 3) for index in range(count)]
    return model.eval(), heads


def peft_logits(model, head, tokenizer, text):
    encoded = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return head(pooled)[0]


def test_mixed_batch_matches_peft_per_adapter(engine, session, tiny_model_dir):
    model, heads = build_peft_adapters(tiny_model_dir, count=4)
    loaded = []
    for index, head in enumerate(heads):
        lora = lora_from_peft_state_dict(get_peft_model_state_dict(model, adapter_name=f"a{index}"))
        labels = [f"l{i}" for i in range(head.out_features)]
        delta = Delta(
            "lora",
            "text_classification",
            labels,
            engine.base.fingerprint,
            "mean",
            64,
            peft_scale(8, 16),
            lora,
            {"classifier.weight": head.weight.detach(), "classifier.bias": head.bias.detach()},
        )
        register_delta(session, f"task{index}", delta)
        loaded.append(engine.acquire(session, f"task{index}"))
    rows = [(loaded[(i * 3) % 4], text) for i, text in enumerate(TEXTS * 2)]

    mixed = engine.run_rows(rows)

    for (adapter, text), logits in zip(rows, mixed, strict=True):
        index = int(adapter.task_name.removeprefix("task"))
        model.set_adapter(f"a{index}")
        expected = peft_logits(model, heads[index], engine.base.tokenizer, text)
        assert torch.allclose(logits, expected, atol=1e-4), (adapter.task_name, text)


def test_predict_uses_each_task_labels(engine, session):
    register_delta(
        session,
        "sentiment",
        make_delta(
            engine.base.encoder, seed=1, labels=("neg", "pos"), fingerprint=engine.base.fingerprint
        ),
    )
    register_delta(
        session,
        "topic",
        make_delta(
            engine.base.encoder, seed=2, labels=("a", "b", "c"), fingerprint=engine.base.fingerprint
        ),
    )

    sentiment = engine.predict(session, "sentiment", TEXTS)
    topic = engine.predict(session, "topic", TEXTS)

    assert {p["label"] for p in sentiment.predictions} <= {"neg", "pos"}
    assert all(set(p["scores"]) == {"a", "b", "c"} for p in topic.predictions)
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-5 for p in topic.predictions)


def test_unknown_task_raises_not_found(engine, session):
    with pytest.raises(TaskNotFound):
        engine.acquire(session, "missing")


def test_task_without_live_version_is_not_ready(engine, session):
    register_delta(
        session,
        "draft",
        make_delta(engine.base.encoder, fingerprint=engine.base.fingerprint),
        live=False,
    )

    with pytest.raises(TaskNotReady, match="no live version yet"):
        engine.acquire(session, "draft")


def test_delta_from_other_base_is_refused(engine, session):
    register_delta(session, "foreign", make_delta(engine.base.encoder, fingerprint="0" * 64))

    with pytest.raises(AdapterIncompatible, match="was trained on base model 000000000000"):
        engine.acquire(session, "foreign")
    assert len(engine.cache) == 0


def test_promoted_version_replaces_cached_one(engine, session):
    encoder, fingerprint = engine.base.encoder, engine.base.fingerprint
    register_delta(session, "task", make_delta(encoder, seed=1, fingerprint=fingerprint))
    first = engine.predict(session, "task", TEXTS)
    register_delta(session, "task", make_delta(encoder, seed=2, fingerprint=fingerprint))

    second = engine.predict(session, "task", TEXTS)

    assert (first.adapter_version, second.adapter_version) == (1, 2)
    assert first.predictions != second.predictions
    assert [loaded.version for loaded in engine.cache.entries.values()] == [2]


def test_eviction_under_tiny_budget_keeps_answers(engine, session):
    encoder, fingerprint = engine.base.encoder, engine.base.fingerprint
    names = [f"task{i}" for i in range(5)]
    for seed, name in enumerate(names):
        register_delta(session, name, make_delta(encoder, seed=seed, fingerprint=fingerprint))
    alone = {name: engine.predict(session, name, TEXTS).predictions for name in names}
    engine.cache.budget_bytes = 2 * make_delta(encoder).nbytes
    for key in list(engine.cache.entries):
        engine.cache.evict(key)

    for _ in range(3):
        for name in names:
            assert engine.predict(session, name, TEXTS).predictions == alone[name]
            assert len(engine.cache) <= 2


def test_pinned_task_survives_eviction(engine, session):
    encoder, fingerprint = engine.base.encoder, engine.base.fingerprint
    register_delta(session, "pinned", make_delta(encoder, seed=9, fingerprint=fingerprint))
    session.scalar(select(Task).where(Task.name == "pinned")).pinned = True
    session.flush()
    engine.predict(session, "pinned", TEXTS)
    engine.cache.budget_bytes = make_delta(encoder).nbytes

    for seed in range(4):
        register_delta(
            session, f"other{seed}", make_delta(encoder, seed=seed, fingerprint=fingerprint)
        )
        engine.predict(session, f"other{seed}", TEXTS)

    assert "pinned" in {loaded.task_name for loaded in engine.cache.entries.values()}


def test_head_only_tasks_share_the_zero_slot(engine, session):
    fingerprint = engine.base.fingerprint
    for seed in range(3):
        delta = make_delta(engine.base.encoder, seed=seed, fingerprint=fingerprint)
        delta.lora = {}
        register_delta(session, f"probe{seed}", delta)

    held = engine.acquire_many(session, ["probe0", "probe1", "probe2"])

    assert [loaded.slot for loaded in held] == [0, 0, 0]
    outputs = engine.run_rows([(loaded, text) for loaded in held for text in TEXTS])
    assert len(outputs) == 3 * len(TEXTS)


def test_preload_loads_pinned_then_busiest(engine, session):
    encoder, fingerprint = engine.base.encoder, engine.base.fingerprint
    for seed, name in enumerate(["quiet", "busy", "pinned"]):
        register_delta(session, name, make_delta(encoder, seed=seed, fingerprint=fingerprint))
    tasks = {task.name: task for task in session.scalars(select(Task))}
    tasks["busy"].predictions_count = 100
    tasks["pinned"].pinned = True
    session.flush()

    assert engine.preload(session, limit=2) == ["pinned", "busy"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_batch_on_cuda_matches_cpu(serving_settings, session, dtype):
    # CI has no GPU; this runs where a CUDA device is present.
    cpu = ServingEngine(serving_settings.model_copy(update={"serve_device": "cpu"}))
    gpu = ServingEngine(
        serving_settings.model_copy(update={"serve_device": "cuda", "serve_dtype": dtype})
    )
    for index in range(4):
        delta = make_delta(cpu.base.encoder, seed=index, fingerprint=cpu.base.fingerprint)
        register_delta(session, f"task{index}", delta)
    rows = {
        name: [(engine.acquire(session, f"task{i % 4}"), text) for i, text in enumerate(TEXTS)]
        for name, engine in (("cpu", cpu), ("gpu", gpu))
    }

    expected = cpu.run_rows(rows["cpu"])
    served = gpu.run_rows(rows["gpu"])

    assert gpu.device.type == "cuda"
    for reference, logits in zip(expected, served, strict=True):
        assert torch.allclose(logits.float().cpu(), reference, atol=5e-2, rtol=5e-2)
