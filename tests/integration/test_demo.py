"""`python -m service demo`, which runs `up` (API and worker) in a child process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_stack import make_reviews_tsv

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_trains_and_reports_accuracy(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "reviews").mkdir()
    train_path = tmp_path / "reviews" / "train.tsv"
    eval_path = tmp_path / "reviews" / "dev.tsv"
    train_path.write_bytes(make_reviews_tsv(40))
    eval_path.write_bytes(make_reviews_tsv(6))
    env = {key: value for key, value in os.environ.items() if not key.startswith("LORAPLEX_")}
    env.update(
        HF_HUB_OFFLINE="1",
        LORAPLEX_BASE_MODEL_DIR=str(tiny_model_dir),
        LORAPLEX_TORCH_THREADS="1",
    )

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "demo",
            "--train",
            str(train_path),
            "--eval",
            str(eval_path),
            "--max-train-rows",
            "50",
            "--epochs",
            "1",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("uploaded train.tsv: 50 rows") for line in lines), lines
    assert any(line.startswith("uploaded dev.tsv: 12 rows") for line in lines), lines
    assert any("queued for task reviews" in line for line in lines), lines
    assert any(line.startswith("accuracy on dev.tsv: ") for line in lines), lines
    assert sum(line.startswith("  predicted ") for line in lines) == 5
    assert lines[-1] == "stopping the service"
    assert "worker stopped with exit code 0" in (tmp_path / "demo" / "service.log").read_text()
