"""Small data sets and a trainer factory shared by the trainer tests."""

import csv
import random
import shutil
from pathlib import Path

import torch

from service.config import default_base_model_dir
from service.hyperparameters import parse_hyperparameters
from service.modeling.base import fingerprint_base_model, load_tokenizer, read_base_model_spec
from worker.trainer.loop import Trainer

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def save_tiny_bert(
    model_dir: Path, num_layers: int, with_pooler: bool = True, dropout: float = 0.1
) -> Path:
    """Save a random BERT (hidden 32) with the all-MiniLM-L6-v2 tokenizer into `model_dir`."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=with_pooler).save_pretrained(model_dir)
    for name in TOKENIZER_FILES:
        shutil.copy(default_base_model_dir() / name, model_dir / name)
    return model_dir


def keyword_examples(count: int, seed: int) -> list[dict]:
    """Rows whose label is given away by one keyword, so even a tiny model can learn them."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    examples = []
    for _ in range(count):
        label = rng.choice(["good", "bad"])
        marker = "excellent" if label == "good" else "awful"
        body = " ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
        examples.append({"text": f"{body} {marker} {body}", "label": label})
    return examples


def make_trainer(
    model_dir: Path,
    strategy: str,
    train: list[dict],
    eval_: list[dict],
    labels: tuple[str, ...] = ("bad", "good"),
    callbacks=(),
    init_delta=None,
    init_examples=None,
    task_type: str = "text_classification",
    **overrides,
) -> Trainer:
    """Return a trainer on `model_dir` in fp32 (so results compare exactly across runs)."""
    hyperparameters = parse_hyperparameters(
        strategy, {"epochs": 2, "batch_size": 16, "bf16": False, **overrides}
    )
    return Trainer(
        spec=read_base_model_spec(model_dir),
        tokenizer=load_tokenizer(model_dir),
        fingerprint=fingerprint_base_model(model_dir),
        strategy=strategy,
        hyperparameters=hyperparameters,
        train_examples=train,
        eval_examples=eval_,
        labels=list(labels),
        callbacks=list(callbacks),
        log_every=2,
        init_delta=init_delta,
        init_examples=init_examples,
        task_type=task_type,
    )


def read_sst2(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [{"text": text.strip(), "label": label} for text, label in reader]
