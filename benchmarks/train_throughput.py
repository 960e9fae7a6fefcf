"""Does the Loraplex trainer train LoRA faster than Hugging Face's Trainer with peft?

Both train on the same 4,000 SST-2 training sentences (`random.Random(0).sample` of
../shared/data/sst2/train.tsv, read with quoting off) with the same hyperparameters: LoRA
r=8, alpha 16, dropout 0.1 on query and value; AdamW, learning rate 1e-3 for LoRA and head,
weight decay 0.01; batch 32, max length 64, one epoch; warmup over 6% of the steps, then
linear decay; global-norm clipping at 1.0; batches grouped by length; bf16 autocast where
the CPU supports it; seed 0. Both are evaluated on all 872 SST-2 dev sentences.

- Loraplex: `worker.trainer.loop.Trainer`, strategy "lora" with every layer at one learning rate
  (layer_lr_decay 1). Head: mean pooling (as all-MiniLM-L6-v2 was trained), dropout 0.1,
  linear. Throughput: rows / (wall time of `fit` minus its evaluation), so tokenisation and
  loading the base count against Loraplex.
- Hugging Face: `AutoModelForSequenceClassification` on the same base folder, which is
  `BertForSequenceClassification`: BERT's [CLS] pooler (dense + tanh), dropout 0.1, linear.
  The pooler stays frozen, because peft's SEQ_CLS task trains only the classifier besides
  LoRA, and this checkpoint never trained it. transformers' `Trainer` with `train_sampling_strategy=
  "group_by_length"` (the transformers 5 spelling of `group_by_length=True`),
  `DataCollatorWithPadding`, optimizer adamw_torch_fused. Throughput: its own
  `train_samples_per_second` (the `train()` loop; tokenisation and loading excluded).

Runs alternate (loraplex, hf, loraplex, hf, ...) after one short warm-up run of each, and the
figures are medians. Accuracies do not vary between repeats (same seed, same data).

    python benchmarks/train_throughput.py            # about 6 minutes on 2 cores
    python benchmarks/train_throughput.py --quick    # smoke run

The last output line is one JSON object with the figures.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)
from transformers.utils import logging as transformers_logging  # noqa: E402

from benchmarks.serving_fixtures import DEFAULT_DATA_DIR, print_json  # noqa: E402
from benchmarks.training_fixtures import sst2_examples, sst2_sample, train_loraplex  # noqa: E402
from service.config import default_base_model_dir  # noqa: E402
from worker.trainer.precision import cpu_supports_bf16  # noqa: E402

LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 8, 16, 0.1
LEARNING_RATE, WEIGHT_DECAY, WARMUP_RATIO = 1e-3, 0.01, 0.06
BATCH_SIZE, MAX_LENGTH, EPOCHS, SEED = 32, 64, 1, 0


def use_bf16() -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def run_loraplex(train: list[dict], dev: list[dict]) -> dict:
    run = train_loraplex(
        "lora",
        {
            "lora_rank": LORA_RANK,
            "lora_alpha": LORA_ALPHA,
            "lora_dropout": LORA_DROPOUT,
            "target_modules": ["query", "value"],
            "learning_rate": LEARNING_RATE,
            "head_learning_rate": LEARNING_RATE,
            "weight_decay": WEIGHT_DECAY,
            "warmup_ratio": WARMUP_RATIO,
            "lr_schedule": "linear",
            "batch_size": BATCH_SIZE,
            "max_length": MAX_LENGTH,
            "epochs": EPOCHS,
            "max_grad_norm": 1.0,
            "layer_lr_decay": 1.0,
            "seed": SEED,
            "bf16": use_bf16(),
        },
        train,
        dev,
    )
    return {"samples_per_s": run.samples_per_second, "accuracy": run.accuracy}


def run_hf(train: list[dict], dev: list[dict], base_dir: Path) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)

    def encode(examples: list[dict]) -> list[dict]:
        encoded = tokenizer([e["text"] for e in examples], truncation=True, max_length=MAX_LENGTH)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": int(e["label"])}
            for ids, mask, e in zip(
                encoded["input_ids"], encoded["attention_mask"], examples, strict=True
            )
        ]

    train_rows, dev_rows = encode(train), encode(dev)
    torch.manual_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=2, local_files_only=True
    )
    model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=LORA_RANK,
            lora_alpha=LORA_ALPHA,
            lora_dropout=LORA_DROPOUT,
            target_modules=["query", "value"],
        ),
    )
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=BATCH_SIZE,
            per_device_eval_batch_size=128,
            num_train_epochs=EPOCHS,
            learning_rate=LEARNING_RATE,
            weight_decay=WEIGHT_DECAY,
            warmup_steps=WARMUP_RATIO,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            bf16=use_bf16(),
            use_cpu=not torch.cuda.is_available(),
            train_sampling_strategy="group_by_length",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=SEED,
        )
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=train_rows,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        output = trainer.train()
        predictions = trainer.predict(dev_rows)
    predicted = np.argmax(predictions.predictions, axis=-1)
    accuracy = float(np.mean(predicted == predictions.label_ids))
    return {"samples_per_s": output.metrics["train_samples_per_second"], "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--rows", type=int, default=4000, help="SST-2 training sentences")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each trainer")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 256, 1
    torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()

    base_dir = default_base_model_dir()
    train = sst2_sample(args.data_dir, args.rows)
    dev = sst2_examples(args.data_dir / "sst2" / "dev.tsv")
    if args.quick:
        dev = dev[:200]
    print(
        f"{len(train)} training rows, {len(dev)} dev rows, {args.threads} threads, "
        f"bf16={use_bf16()}",
        flush=True,
    )

    # warm-up: one-time costs (kernel selection, lazy imports) stay out of the figures
    run_loraplex(train[:96], dev[:32])
    run_hf(train[:96], dev[:32], base_dir)

    runs: dict[str, list[dict]] = {"loraplex": [], "hf": []}
    for repeat in range(args.repeats):
        for name in ("loraplex", "hf"):
            started = time.perf_counter()
            run = run_loraplex(train, dev) if name == "loraplex" else run_hf(train, dev, base_dir)
            runs[name].append(run)
            print(
                f"repeat {repeat + 1} {name}: {run['samples_per_s']:.1f} samples/s, dev accuracy "
                f"{run['accuracy']:.4f} ({time.perf_counter() - started:.0f} s in all)",
                flush=True,
            )

    loraplex = statistics.median(run["samples_per_s"] for run in runs["loraplex"])
    hf = statistics.median(run["samples_per_s"] for run in runs["hf"])
    loraplex_accuracy = runs["loraplex"][0]["accuracy"]
    hf_accuracy = runs["hf"][0]["accuracy"]
    print(
        f"median: loraplex {loraplex:.1f} samples/s, hf {hf:.1f} samples/s, speedup "
        f"{loraplex / hf:.2f}x; dev accuracy loraplex {loraplex_accuracy:.4f}, hf "
        f"{hf_accuracy:.4f}",
        flush=True,
    )
    print_json(
        {
            "loraplex_samples_per_s": round(loraplex, 2),
            "hf_samples_per_s": round(hf, 2),
            "speedup": round(loraplex / hf, 3),
            "loraplex_accuracy": round(loraplex_accuracy, 4),
            "hf_accuracy": round(hf_accuracy, 4),
            "loraplex_runs_samples_per_s": [round(r["samples_per_s"], 2) for r in runs["loraplex"]],
            "hf_runs_samples_per_s": [round(r["samples_per_s"], 2) for r in runs["hf"]],
            "rows": len(train),
            "dev_rows": len(dev),
            "threads": args.threads,
            "bf16": use_bf16(),
        }
    )


if __name__ == "__main__":
    main()
