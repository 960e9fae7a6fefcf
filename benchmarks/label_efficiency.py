"""How does dev accuracy grow with the number of labels, for linear_probe, lora and full?

For each budget of 32, 128, 512 and 2,048 labelled SST-2 training sentences (drawn with
`random.Random(seed).sample` from ../shared/data/sst2/train.tsv, one draw per seed), each
strategy trains with its job defaults, max length 64 and batch 16. Small budgets get more
epochs so that every run takes some optimizer steps: epochs = max(the strategy's default,
min(20, ceil(60 / steps per epoch))). The figure is the dev accuracy of the last epoch on all
872 SST-2 dev sentences, so the dev set never picks an epoch (the job itself would register
the best epoch, which is more optimistic). With several seeds the table shows the mean.

    python benchmarks/label_efficiency.py                     # about 25 minutes on 2 cores
    python benchmarks/label_efficiency.py --quick             # smoke run
    python benchmarks/label_efficiency.py --plot out.png      # where the PNG goes

Prints a table, writes the plot (default docs/figures/label_efficiency.png), and ends with
one JSON line mapping each strategy to its accuracy per label budget.
"""

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.serving_fixtures import DEFAULT_DATA_DIR, REPO_ROOT, print_json  # noqa: E402
from benchmarks.training_fixtures import sst2_examples, train_loraplex  # noqa: E402
from service.hyperparameters import HYPERPARAMETER_MODELS  # noqa: E402

STRATEGIES = ("linear_probe", "lora", "full")
BUDGETS = (32, 128, 512, 2048)
BATCH_SIZE, MAX_LENGTH, MIN_STEPS, MAX_EPOCHS = 16, 64, 60, 20


def epochs_for(strategy: str, rows: int) -> int:
    default = HYPERPARAMETER_MODELS[strategy].model_fields["epochs"].default
    steps_per_epoch = math.ceil(rows / BATCH_SIZE)
    return max(default, min(MAX_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch)))


def plot(results: dict[str, dict[int, float]], majority: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for strategy, by_budget in results.items():
        budgets = sorted(by_budget)
        axes.plot(budgets, [by_budget[b] for b in budgets], marker="o", label=strategy)
    axes.axhline(majority, color="grey", linestyle="--", label="majority class")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("labelled training sentences")
    axes.set_ylabel("SST-2 dev accuracy")
    axes.set_title("Accuracy against labels (all-MiniLM-L6-v2)")
    axes.legend()
    axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=1, help="label draws per budget")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG path (default docs/figures/label_efficiency.png, or a temporary file with "
        "--quick)",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.budgets = [32, 64]
    if args.plot is None:
        folder = Path(tempfile.mkdtemp()) if args.quick else REPO_ROOT / "docs" / "figures"
        args.plot = folder / "label_efficiency.png"
    torch.set_num_threads(args.threads)

    pool = sst2_examples(args.data_dir / "sst2" / "train.tsv")
    dev = sst2_examples(args.data_dir / "sst2" / "dev.tsv")
    if args.quick:
        dev = dev[:200]
    majority = max(sum(e["label"] == label for e in dev) for label in ("0", "1")) / len(dev)

    results: dict[str, dict[int, float]] = {strategy: {} for strategy in args.strategies}
    for budget in args.budgets:
        for strategy in args.strategies:
            accuracies = []
            for seed in range(args.seeds):
                train = random.Random(seed).sample(pool, budget)
                values = {
                    "max_length": MAX_LENGTH,
                    "batch_size": BATCH_SIZE,
                    "epochs": 1 if args.quick else epochs_for(strategy, budget),
                    "seed": seed,
                }
                run = train_loraplex(strategy, values, train, dev)
                accuracies.append(run.last_epoch_accuracy)
                print(
                    f"{strategy:>12} {budget:>5} labels, seed {seed}: last-epoch accuracy "
                    f"{run.last_epoch_accuracy:.4f} (best epoch {run.accuracy:.4f}), "
                    f"{run.total_seconds:.0f} s",
                    flush=True,
                )
            results[strategy][budget] = statistics.mean(accuracies)

    header = "| strategy | " + " | ".join(f"{b} labels" for b in args.budgets) + " |"
    print(f"\nSST-2 dev accuracy ({len(dev)} sentences; majority class {majority:.4f})")
    print(header)
    print("| --- " * (len(args.budgets) + 1) + "|")
    for strategy, by_budget in results.items():
        cells = " | ".join(f"{by_budget[b]:.4f}" for b in args.budgets)
        print(f"| {strategy} | {cells} |")
    plot(results, majority, args.plot)
    print(f"plot written to {args.plot}", flush=True)
    print_json(
        {
            strategy: {str(budget): round(accuracy, 4) for budget, accuracy in by_budget.items()}
            for strategy, by_budget in results.items()
        }
    )


if __name__ == "__main__":
    main()
