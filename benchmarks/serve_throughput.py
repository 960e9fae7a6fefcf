"""How close does mixed-adapter serving come to the bare base model, and how does peft compare?

On real SST-2 dev sentences, batches of 32, max length 64, measured in one run (medians of
--repetitions runs over the same padded batches):

1. base: the frozen base model alone, no adapter (the limit);
2. mixed: Loraplex, every row a different adapter out of N (LoRA r=8 on query and value,
   each adapter with its own head), for N in 1, 8, 64, 256;
3. peft_loop: peft's multi-tenant loop (group rows by adapter, set_adapter, one forward per
   group) with the same N adapters on transformers' BertModel;
4. peft_mixed: peft's own mixed batch (`adapter_names` per row).

Also: bf16 serving against fp32 (throughput of the base, SST-2 dev accuracy of a trained
task), dynamic padding with length-sorted batches against fixed padding, cold-load time from
the registry into a slot, and resident memory with 256 of 1,000 registered tasks loaded (in a
child process, so that earlier measurements do not pollute its RSS).

    python benchmarks/serve_throughput.py            # full run, about 15 minutes on 2 cores
    python benchmarks/serve_throughput.py --quick    # smoke run

The last output line is one JSON object with the figures.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict  # noqa: E402
from transformers import AutoModel  # noqa: E402

from benchmarks.serving_fixtures import (  # noqa: E402
    DEFAULT_DATA_DIR,
    print_json,
    random_lora_delta,
    read_sst2,
    rss_mb,
)
from service.config import Settings  # noqa: E402
from service.db import session_scope  # noqa: E402
from service.hyperparameters import parse_hyperparameters  # noqa: E402
from service.migrate import upgrade_to_head  # noqa: E402
from service.modeling.base import (  # noqa: E402
    fingerprint_base_model,
    load_tokenizer,
    read_base_model_spec,
)
from service.modeling.heads import pool  # noqa: E402
from service.modeling.peft_format import peft_state_dict_from_lora  # noqa: E402
from service.registry.adapters import add_adapter_version, get_or_create_task  # noqa: E402
from service.serving.engine import ServingEngine  # noqa: E402
from service.serving.tasktypes import EncodedRow  # noqa: E402

BATCH_SIZE = 32
MAX_LENGTH = 64


def make_settings(data_dir: Path, **overrides) -> Settings:
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'registry.db'}",
        broker_url="memory://",
        preload_tasks=0,
        adapter_cache_mb=4096,
        max_batch_rows=BATCH_SIZE,
        **overrides,
    )
    upgrade_to_head(settings.database_url)
    return settings


def register_random_tasks(settings: Settings, engine: ServingEngine, count: int) -> list[str]:
    names = [f"task{index:04d}" for index in range(count)]
    with session_scope(settings.database_url) as session:
        for index, name in enumerate(names):
            delta = random_lora_delta(engine.base.encoder, index, engine.base.fingerprint)
            task = get_or_create_task(session, name, delta.task_type, delta.labels)
            add_adapter_version(session, task, delta)
    return names


# measurements


def base_run(engine: ServingEngine, batches):
    encoder = engine.base.encoder
    head = torch.nn.Linear(encoder.config.hidden_size, 2).eval()

    def run() -> None:
        with torch.inference_mode():
            for input_ids, attention_mask, _ in batches:
                hidden = encoder(input_ids, attention_mask)
                head(pool(hidden.float(), attention_mask, "mean"))

    return run


def mixed_run(engine: ServingEngine, held, batches):
    work = [
        [(held[i % len(held)], EncodedRow(i, ids)) for i, ids in enumerate(token_ids)]
        for _, _, token_ids in batches
    ]

    def run() -> None:
        for rows in work:
            engine.run_encoded(rows)

    return run


def build_peft_model(model_dir: Path, deltas) -> torch.nn.Module:
    base = AutoModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"])
    model = get_peft_model(base, config, adapter_name="a0")
    for index, delta in enumerate(deltas):
        name = f"a{index}"
        if index:
            model.add_adapter(name, config)
        set_peft_model_state_dict(model, peft_state_dict_from_lora(delta.lora), adapter_name=name)
    return model.eval()


def peft_loop_run(model, heads, batches):
    def run() -> None:
        with torch.inference_mode():
            for input_ids, attention_mask, _ in batches:
                groups: dict[int, list[int]] = {}
                for row in range(input_ids.shape[0]):
                    groups.setdefault(row % len(heads), []).append(row)
                for adapter, rows in groups.items():
                    model.set_adapter(f"a{adapter}")
                    index = torch.tensor(rows)
                    hidden = model(
                        input_ids=input_ids[index], attention_mask=attention_mask[index]
                    ).last_hidden_state
                    heads[adapter](pool(hidden, attention_mask[index], "mean"))

    return run


def peft_mixed_run(model, heads, batches):
    def run() -> None:
        with torch.inference_mode():
            for input_ids, attention_mask, _ in batches:
                names = [f"a{row % len(heads)}" for row in range(input_ids.shape[0])]
                hidden = model(
                    input_ids=input_ids, attention_mask=attention_mask, adapter_names=names
                ).last_hidden_state
                pooled = pool(hidden, attention_mask, "mean")
                for row in range(input_ids.shape[0]):
                    heads[row % len(heads)](pooled[row : row + 1])

    return run


def measure_cold_load(engine: ServingEngine, settings: Settings, name: str, loads: int) -> float:
    """Median milliseconds from registry row to adapter ready in a slot."""
    times = []
    with session_scope(settings.database_url) as session:
        for _ in range(loads):
            for key, loaded in list(engine.cache.entries.items()):
                if loaded.task_name == name:
                    engine.cache.evict(key)
            started = time.perf_counter()
            loaded = engine.acquire(session, name)
            times.append(time.perf_counter() - started)
            engine.release(loaded)
    return statistics.median(times) * 1000


def interleaved_medians(runs: dict, repetitions: int) -> dict[str, float]:
    """Return the median seconds of each run, calling every run once per repetition."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repetitions):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def rows_in(batches) -> int:
    return sum(input_ids.shape[0] for input_ids, _, _ in batches)


def make_batches(engine: ServingEngine, texts: list[str], fixed_padding: bool = False):
    """Return (input_ids, attention_mask, token_ids) per batch of 32, in dev-set order."""
    tokenizer = engine.base.tokenizer
    batches = []
    for start in range(0, len(texts), BATCH_SIZE):
        chunk = texts[start : start + BATCH_SIZE]
        token_ids = tokenizer(chunk, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        if fixed_padding:
            token_ids = [ids + [0] * (MAX_LENGTH - len(ids)) for ids in token_ids]
        input_ids, attention_mask, _ = engine._pad([(0, ids, ()) for ids in token_ids])
        if fixed_padding:
            attention_mask = (input_ids != 0).long()
        batches.append((input_ids, attention_mask, token_ids))
    return batches


# bf16 accuracy


def train_sst2_task(settings: Settings, data_dir: Path, train_rows: int):
    from worker.trainer.loop import Trainer

    train = random.Random(0).sample(read_sst2(data_dir / "sst2" / "train.tsv"), train_rows)
    dev = read_sst2(data_dir / "sst2" / "dev.tsv")
    base_dir = settings.resolved_base_model_dir
    trainer = Trainer(
        spec=read_base_model_spec(base_dir),
        tokenizer=load_tokenizer(base_dir),
        fingerprint=fingerprint_base_model(base_dir),
        strategy="lora",
        hyperparameters=parse_hyperparameters("lora", {"epochs": 1, "max_length": MAX_LENGTH}),
        train_examples=[{"text": t, "label": y} for t, y in train],
        eval_examples=[{"text": t, "label": y} for t, y in dev[:64]],
        labels=["0", "1"],
    )
    return trainer.fit().delta, dev


def dev_accuracy(engine: ServingEngine, settings: Settings, name: str, dev) -> float:
    with session_scope(settings.database_url) as session:
        result = engine.predict(session, name, [text for text, _ in dev])
    correct = sum(
        p["label"] == label for p, (_, label) in zip(result.predictions, dev, strict=True)
    )
    return correct / len(dev)


# memory, in a child process


def measure_memory(registered: int, resident: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder))
        engine = ServingEngine(settings)
        names = register_random_tasks(settings, engine, registered)
        rss_base = rss_mb()
        delta_bytes = 0
        with session_scope(settings.database_url) as session:
            for name in names[:resident]:
                loaded = engine.acquire(session, name)
                engine.release(loaded)
        for loaded in engine.cache.entries.values():
            delta_bytes += loaded.nbytes
        rss_resident = rss_mb()
    return {
        "rss_mb_base": round(rss_base, 1),
        "rss_mb_resident": round(rss_resident, 1),
        "resident_delta_mb": round(delta_bytes / 2**20, 1),
        "resident_adapters": resident,
        "registered_tasks": registered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--batches", type=int, default=10, help="batches of 32 dev sentences")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--train-rows", type=int, default=2000, help="SST-2 rows for bf16 check")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.batches, args.repetitions, args.adapters, args.train_rows = 2, 2, [1, 8], 200

    if args.memory_only:
        registered, resident = (40, 16) if args.quick else (1000, 256)
        print(json.dumps(measure_memory(registered, resident)), flush=True)
        return

    print(f"torch threads: {torch.get_num_threads()}, torch {torch.__version__}", flush=True)
    figures: dict = {"batch_size": BATCH_SIZE, "max_length": MAX_LENGTH}
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder))
        engine = ServingEngine(settings)
        texts = [text for text, _ in read_sst2(args.data_dir / "sst2" / "dev.tsv")]
        batches = make_batches(engine, texts[: args.batches * BATCH_SIZE])
        names = register_random_tasks(settings, engine, max(args.adapters))
        with session_scope(settings.database_url) as session:
            held = engine.acquire_many(session, names)

        # 1. to 4., interleaved: every repetition runs each configuration once, so a change
        # of load on the machine hits all of them alike
        deltas = [
            random_lora_delta(engine.base.encoder, i, engine.base.fingerprint)
            for i in range(max(args.adapters))
        ]
        heads = [loaded.head for loaded in held]
        fixed = make_batches(engine, texts[: args.batches * BATCH_SIZE], fixed_padding=True)
        ordered = make_batches(engine, sorted(texts[: args.batches * BATCH_SIZE], key=len))
        hf_base = AutoModel.from_pretrained(
            settings.resolved_base_model_dir, add_pooling_layer=False
        ).eval()

        def hf_base_run() -> None:
            with torch.inference_mode():
                for input_ids, attention_mask, _ in batches:
                    hf_base(input_ids=input_ids, attention_mask=attention_mask)

        runs = {
            "base": base_run(engine, batches),
            "base_fixed_padding": base_run(engine, fixed),
            "base_sorted": base_run(engine, ordered),
            "hf_base": hf_base_run,
        }
        for count in args.adapters:
            model = build_peft_model(settings.resolved_base_model_dir, deltas[:count])
            runs[f"mixed_{count}"] = mixed_run(engine, held[:count], batches)
            runs[f"peft_loop_{count}"] = peft_loop_run(model, heads[:count], batches)
            runs[f"peft_mixed_{count}"] = peft_mixed_run(model, heads[:count], batches)
        seconds = interleaved_medians(runs, args.repetitions)
        sps = {name: round(rows_in(batches) / value, 1) for name, value in seconds.items()}
        for name, value in sps.items():
            print(f"{name}: {value} sentences/s", flush=True)
        figures["base_sps"] = sps["base"]
        figures["base_fixed_padding_sps"] = sps["base_fixed_padding"]
        figures["base_sorted_sps"] = sps["base_sorted"]
        figures["hf_base_sps"] = sps["hf_base"]
        for kind in ("mixed", "peft_loop", "peft_mixed"):
            figures[f"{kind}_sps"] = {str(c): sps[f"{kind}_{c}"] for c in args.adapters}

        # 5. cold load with 1 and with 256 other adapters resident
        with session_scope(settings.database_url) as session:
            for loaded in held:
                engine.release(loaded)
        for key in list(engine.cache.entries)[1:]:
            engine.cache.evict(key)
        loads = 20 if args.quick else 100
        figures["cold_load_ms_p50_1_resident"] = round(
            measure_cold_load(engine, settings, names[-1], loads), 2
        )
        with session_scope(settings.database_url) as session:
            for name in names[:-1]:
                engine.release(engine.acquire(session, name))
        figures["cold_load_ms_p50"] = round(
            measure_cold_load(engine, settings, names[-1], loads), 2
        )
        figures["resident_during_cold_load"] = len(engine.cache) - 1

        # bf16 against fp32: base throughput and accuracy of a trained SST-2 task
        delta, dev = train_sst2_task(settings, args.data_dir, args.train_rows)
        delta.base_fingerprint = engine.base.fingerprint
        with session_scope(settings.database_url) as session:
            task = get_or_create_task(session, "sst2", delta.task_type, delta.labels)
            add_adapter_version(session, task, delta)
        accuracy_fp32 = dev_accuracy(engine, settings, "sst2", dev)
        bf16_engine = ServingEngine(settings.model_copy(update={"serve_dtype": "bfloat16"}))
        bf16_seconds = interleaved_medians(
            {"fp32": base_run(engine, batches), "bf16": base_run(bf16_engine, batches)},
            args.repetitions,
        )
        figures["bf16_base_sps"] = round(rows_in(batches) / bf16_seconds["bf16"], 1)
        figures["fp32_base_sps_beside_bf16"] = round(rows_in(batches) / bf16_seconds["fp32"], 1)
        accuracy_bf16 = dev_accuracy(bf16_engine, settings, "sst2", dev)
        figures["fp32_accuracy"] = round(accuracy_fp32, 4)
        figures["bf16_accuracy"] = round(accuracy_bf16, 4)

    # 6. memory, in a fresh process
    child = subprocess.run(
        [sys.executable, __file__, "--memory-only", *(["--quick"] if args.quick else [])],
        capture_output=True,
        text=True,
        check=True,
    )
    figures.update(json.loads(child.stdout.strip().splitlines()[-1]))

    # ratios
    largest = str(max(args.adapters))
    reference = "64" if "64" in figures["mixed_sps"] else largest
    figures["ratio_to_base"] = round(figures["mixed_sps"][reference] / figures["base_sps"], 3)
    figures["ratio_to_base_256"] = round(figures["mixed_sps"][largest] / figures["base_sps"], 3)
    figures["ratio_to_peft_mixed"] = round(
        figures["mixed_sps"][reference] / figures["peft_mixed_sps"][reference], 3
    )
    figures["ratio_to_peft_loop"] = round(
        figures["mixed_sps"][reference] / figures["peft_loop_sps"][reference], 3
    )
    figures["bf16_ratio_to_fp32_base"] = round(
        figures["bf16_base_sps"] / figures["fp32_base_sps_beside_bf16"], 3
    )
    figures["bf16_accuracy_drop"] = round(figures["fp32_accuracy"] - figures["bf16_accuracy"], 4)
    figures["memory_ratio"] = round(
        (figures["rss_mb_resident"] - figures["rss_mb_base"])
        / max(figures["resident_delta_mb"], 1e-9),
        3,
    )
    print_json(figures)


if __name__ == "__main__":
    main()
