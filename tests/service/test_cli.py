import random
from pathlib import Path

import pytest

from service.cli import build_parser, build_worker_command, default_task_name, run_demo, sample_rows

TSV = b"sentence\tlabel\n" + b"".join(f"text {i}\t{i % 2}\n".encode() for i in range(10))


def test_sample_rows_keeps_header_order() -> None:
    sampled = sample_rows(TSV, "train.tsv", max_rows=4, seed=0).decode().splitlines()

    assert sampled[0] == "sentence\tlabel"
    assert len(sampled) == 5
    indexes = [int(line.split("\t")[0].removeprefix("text ")) for line in sampled[1:]]
    assert indexes == sorted(indexes)
    expected = sorted(random.Random(0).sample(range(10), 4))
    assert indexes == expected


def test_sample_rows_depends_on_seed() -> None:
    first = sample_rows(TSV, "train.tsv", max_rows=4, seed=0)

    assert sample_rows(TSV, "train.tsv", max_rows=4, seed=0) == first
    assert sample_rows(TSV, "train.tsv", max_rows=4, seed=1) != first


@pytest.mark.parametrize("max_rows", [0, 10, 50])
def test_sample_rows_keeps_all(max_rows: int) -> None:
    assert sample_rows(TSV, "train.tsv", max_rows=max_rows, seed=0) == TSV


def test_sample_rows_csv_multiline_field() -> None:
    data = b'text,label\n"first line\nsecond line",1\nplain,0\nother,1\n'

    sampled = sample_rows(data, "train.csv", max_rows=3, seed=0)

    assert sampled == data


def test_sample_rows_jsonl_has_no_header() -> None:
    data = b"".join(f'{{"text": "t{i}", "label": "a"}}\n'.encode() for i in range(5))

    sampled = sample_rows(data, "train.jsonl", max_rows=2, seed=0).decode().splitlines()

    assert len(sampled) == 2
    assert all(line.startswith('{"text"') for line in sampled)


def test_sample_rows_strips_byte_order_mark() -> None:
    data = "\ufeff".encode() + TSV

    assert sample_rows(data, "train.tsv", max_rows=0, seed=0) == TSV


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data/sst2/train.tsv", "sst2"),
        ("my data/reviews (v2)/train.csv", "reviews-v2"),
        ("/train.tsv", "demo"),
    ],
)
def test_default_task_name(path: str, expected: str) -> None:
    assert default_task_name(Path(path)) == expected


def test_worker_command_pools() -> None:
    solo = build_worker_command(1)
    prefork = build_worker_command(3)

    assert solo[solo.index("--pool") + 1] == "solo"
    assert prefork[prefork.index("--pool") + 1 : prefork.index("--pool") + 4] == [
        "prefork",
        "-c",
        "3",
    ]
    assert solo[solo.index("-A") + 1] == "worker.app"


def test_second_embedded_worker_is_rejected(tmp_path: Path) -> None:
    from service.cli import lock_embedded_worker

    assert lock_embedded_worker(tmp_path)
    assert not lock_embedded_worker(tmp_path)


def test_demo_with_missing_file_fails_before_starting_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\ngood\t1\n")
    args = build_parser().parse_args(
        [
            "demo",
            "--train",
            str(train),
            "--eval",
            str(tmp_path / "missing.tsv"),
            "--data-dir",
            str(tmp_path / "demo"),
        ]
    )

    assert run_demo(args) == 2
    assert "--eval" in capsys.readouterr().out
    assert not (tmp_path / "demo").exists()
