"""How much faster is a linear probe than LoRA end to end, and how accurate is it?

Both train on the same 4,000 SST-2 training sentences (`random.Random(0).sample` of
../shared/data/sst2/train.tsv) with their job defaults and max length 64, and are evaluated
on all 872 SST-2 dev sentences after every epoch:

- lora (the baseline): rank 8, alpha 16 on all six linear layers of every block, 3 epochs,
  learning rate 1e-3, batch 32;
- linear_probe: the frozen base's mean-pooled features computed once (train and dev), then
  10 epochs of the head alone, learning rate 1e-2, batch 32.

End to end is the wall time of Loraplex's `Trainer.fit`: tokenisation, loading the base,
training, every evaluation and building the delta. Runs alternate (lora, linear_probe, ...)
after a short warm-up run of each; the figures are medians. Accuracy is the registered
(best-epoch) dev accuracy.

    python benchmarks/linear_probe_speed.py            # about 5 minutes on 2 cores
    python benchmarks/linear_probe_speed.py --quick    # smoke run

The last output line is one JSON object with the figures.
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.serving_fixtures import DEFAULT_DATA_DIR, print_json  # noqa: E402
from benchmarks.training_fixtures import sst2_examples, sst2_sample, train_loraplex  # noqa: E402

MAX_LENGTH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--rows", type=int, default=4000, help="SST-2 training sentences")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each strategy")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 256, 1
    torch.set_num_threads(args.threads)

    train = sst2_sample(args.data_dir, args.rows)
    dev = sst2_examples(args.data_dir / "sst2" / "dev.tsv")
    if args.quick:
        dev = dev[:200]
    print(f"{len(train)} training rows, {len(dev)} dev rows, {args.threads} threads", flush=True)

    values = {"max_length": MAX_LENGTH}
    for strategy in ("lora", "linear_probe"):
        train_loraplex(strategy, {**values, "epochs": 1}, train[:64], dev[:32])

    runs: dict[str, list] = {"lora": [], "linear_probe": []}
    for repeat in range(args.repeats):
        for strategy in runs:
            run = train_loraplex(strategy, values, train, dev)
            runs[strategy].append(run)
            print(
                f"repeat {repeat + 1} {strategy}: {run.total_seconds:.1f} s end to end, dev "
                f"accuracy {run.accuracy:.4f}",
                flush=True,
            )

    lora = statistics.median(run.total_seconds for run in runs["lora"])
    probe = statistics.median(run.total_seconds for run in runs["linear_probe"])
    probe_accuracy = runs["linear_probe"][0].accuracy
    lora_accuracy = runs["lora"][0].accuracy
    print(
        f"median: linear_probe {probe:.1f} s, lora {lora:.1f} s, {lora / probe:.1f}x faster; "
        f"dev accuracy linear_probe {probe_accuracy:.4f}, lora {lora_accuracy:.4f}",
        flush=True,
    )
    print_json(
        {
            "linear_probe_seconds": round(probe, 2),
            "lora_seconds": round(lora, 2),
            "speedup": round(lora / probe, 2),
            "linear_probe_accuracy": round(probe_accuracy, 4),
            "lora_accuracy": round(lora_accuracy, 4),
            "rows": len(train),
            "dev_rows": len(dev),
            "threads": args.threads,
        }
    )


if __name__ == "__main__":
    main()
