"""The baseline of benchmarks/task_parity.py: Hugging Face's Trainer with a peft LoRA model.

Each function trains one task type the way a Hugging Face user would, following the
preprocessing and postprocessing of transformers' examples/pytorch scripts (run_ner.py,
run_qa.py with utils_qa.py, run_glue.py), and returns the eval predictions in plain Python
form, so that the benchmark scores them with the reference metric code:

- token classification: AutoModelForTokenClassification, the word's label on its first
  sub-token and -100 elsewhere, sentences truncated at max_length, the word's tag taken
  from its first sub-token;
- extractive QA: AutoModelForQuestionAnswering, windows with doc_stride labelled with the
  answer's tokens or [CLS], and the n-best span search of utils_qa.py over all windows;
- sentence pairs: the base with mean pooling, dropout and a linear head (the pooling the
  all-MiniLM-L6-v2 folder was trained with, and the one Loraplex uses), since
  AutoModelForSequenceClassification would put a classifier on BERT's untrained pooler.

Also here: the SQuAD v1.1 evaluation functions, as in the official evaluate-v1.1.py script.
"""

import collections
import re
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, TaskType, get_peft_model
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerFast,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

# The six linear layers of a BERT block that Loraplex's "lora" strategy adapts by default:
# query, key, value, and the three "dense" layers (attention output, intermediate, output).
LORA_TARGET_MODULES = ["query", "key", "value", "dense"]
N_BEST = 20  # run_qa.py's default n_best_size


@dataclass(frozen=True)
class RunSettings:
    """The hyperparameters that both trainers get."""

    epochs: int
    learning_rate: float
    batch_size: int
    max_length: int
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    seed: int = 0
    doc_stride: int | None = None
    max_answer_tokens: int = 30


@dataclass
class BaselineRun:
    """Eval predictions of a baseline and its wall times in seconds."""

    predictions: list
    train_seconds: float
    eval_seconds: float


def lora_config(settings: RunSettings, task_type: TaskType | None) -> LoraConfig:
    return LoraConfig(
        task_type=task_type,
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=LORA_TARGET_MODULES,
    )


def train_with_hf(model: nn.Module, rows: list[dict], collator, settings: RunSettings) -> float:
    """Train `model` on feature rows with transformers' Trainer; return the seconds taken."""
    with tempfile.TemporaryDirectory(prefix="hf-baseline-") as output_dir:
        arguments = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
            warmup_steps=settings.warmup_ratio,  # a float below 1 is a share of the steps
            lr_scheduler_type="linear",
            max_grad_norm=settings.max_grad_norm,
            seed=settings.seed,
            bf16=True,
            use_cpu=True,
            train_sampling_strategy="group_by_length",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            label_names=["labels"] if "labels" in rows[0] else ["start_positions", "end_positions"],
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=rows, data_collator=collator)
        trainer.remove_callback(PrinterCallback)  # it prints the final training log
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


@torch.inference_mode()
def predict_batches(model: nn.Module, rows: list[dict], collator, batch_size: int = 64) -> list:
    """Return the logits of each row, in row order, with padding removed for token outputs."""
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    outputs: list = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        indexes = order[start : start + batch_size]
        batch = collator([{k: v for k, v in rows[i].items() if k in MODEL_INPUTS} for i in indexes])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = model(**batch)
        for position, index in enumerate(indexes):
            length = len(rows[index]["input_ids"])
            if isinstance(result, dict) and "logits" in result:
                logits = result["logits"][position].float()
                outputs[index] = logits[:length] if logits.dim() == 2 else logits
            else:
                outputs[index] = (
                    result.start_logits[position, :length].float().numpy(),
                    result.end_logits[position, :length].float().numpy(),
                )
    return outputs


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# Token classification, as run_ner.py


def train_token_classification(
    base_dir: Path,
    tokenizer: PreTrainedTokenizerFast,
    labels: list[str],
    train: list[dict],
    eval_: list[dict],
    settings: RunSettings,
) -> BaselineRun:
    """Return the predicted tag of every eval word (first sub-token; "O" past truncation)."""
    label_index = {label: index for index, label in enumerate(labels)}
    torch.manual_seed(settings.seed)
    model = AutoModelForTokenClassification.from_pretrained(base_dir, num_labels=len(labels))
    model = get_peft_model(model, lora_config(settings, TaskType.TOKEN_CLS))
    collator = DataCollatorForTokenClassification(tokenizer)

    def encode(examples: list[dict]) -> tuple[list[dict], list[list[int | None]]]:
        encoding = tokenizer(
            [e["tokens"] for e in examples],
            is_split_into_words=True,
            truncation=True,
            max_length=settings.max_length,
        )
        rows, word_ids = [], []
        for index, example in enumerate(examples):
            ids = encoding.word_ids(index)
            previous = None
            row_labels = []
            for word in ids:
                first = word is not None and word != previous
                row_labels.append(label_index[example["tags"][word]] if first else -100)
                previous = word
            rows.append({**{k: encoding[k][index] for k in MODEL_INPUTS}, "labels": row_labels})
            word_ids.append(ids)
        return rows, word_ids

    train_rows, _ = encode(train)
    seconds = train_with_hf(model, train_rows, collator, settings)

    started = time.perf_counter()
    eval_rows, eval_word_ids = encode(eval_)
    logits = predict_batches(model, eval_rows, collator)
    predictions = []
    for example, row_logits, word_ids in zip(eval_, logits, eval_word_ids, strict=True):
        tags = ["O"] * len(example["tokens"])
        best = row_logits.argmax(dim=-1).tolist()
        previous = None
        for position, word in enumerate(word_ids):
            if word is not None and word != previous:
                tags[word] = labels[best[position]]
            previous = word
        predictions.append(tags)
    return BaselineRun(predictions, seconds, time.perf_counter() - started)


# Extractive QA, as run_qa.py and utils_qa.py


def train_extractive_qa(
    base_dir: Path,
    tokenizer: PreTrainedTokenizerFast,
    train: list[dict],
    eval_: list[dict],
    settings: RunSettings,
) -> BaselineRun:
    """Return the predicted answer text of every eval question."""
    assert settings.doc_stride is not None
    torch.manual_seed(settings.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(base_dir)
    model = get_peft_model(model, lora_config(settings, TaskType.QUESTION_ANS))
    collator = DataCollatorWithPadding(tokenizer)

    def encode(examples: list[dict]):
        return tokenizer(
            [e["question"].lstrip() for e in examples],
            [e["context"] for e in examples],
            truncation="only_second",
            max_length=settings.max_length,
            stride=settings.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )

    encoding = encode(train)
    train_rows = []
    for index in range(len(encoding["input_ids"])):
        example = train[encoding["overflow_to_sample_mapping"][index]]
        start, end = _answer_positions(encoding, index, example, tokenizer.cls_token_id)
        row = {k: encoding[k][index] for k in MODEL_INPUTS}
        train_rows.append({**row, "start_positions": start, "end_positions": end})
    seconds = train_with_hf(model, train_rows, collator, settings)

    started = time.perf_counter()
    encoding = encode(eval_)
    eval_rows = [
        {k: encoding[k][index] for k in MODEL_INPUTS} for index in range(len(encoding["input_ids"]))
    ]
    logits = predict_batches(model, eval_rows, collator)
    windows_of: dict[int, list[int]] = collections.defaultdict(list)
    for index, example_index in enumerate(encoding["overflow_to_sample_mapping"]):
        windows_of[example_index].append(index)
    predictions = []
    for example_index, example in enumerate(eval_):
        best_text, best_score = "", -np.inf
        for index in windows_of[example_index]:
            offsets = [
                offset if sequence == 1 else None
                for offset, sequence in zip(
                    encoding["offset_mapping"][index], encoding.sequence_ids(index), strict=True
                )
            ]
            start_logits, end_logits = logits[index]
            for start in np.argsort(start_logits)[-1 : -N_BEST - 1 : -1]:
                for end in np.argsort(end_logits)[-1 : -N_BEST - 1 : -1]:
                    if offsets[start] is None or offsets[end] is None or end < start:
                        continue
                    if end - start + 1 > settings.max_answer_tokens:
                        continue
                    score = start_logits[start] + end_logits[end]
                    if score > best_score:
                        best_score = score
                        best_text = example["context"][offsets[start][0] : offsets[end][1]]
        predictions.append(best_text)
    return BaselineRun(predictions, seconds, time.perf_counter() - started)


def _answer_positions(encoding, index: int, example: dict, cls_token_id: int) -> tuple[int, int]:
    input_ids = encoding["input_ids"][index]
    cls_index = input_ids.index(cls_token_id)
    if not example["answers"]:
        return cls_index, cls_index
    answer = example["answers"][0]
    start_char = answer["answer_start"]
    end_char = start_char + len(answer["text"])
    sequence_ids = encoding.sequence_ids(index)
    offsets = encoding["offset_mapping"][index]
    context = [i for i, sequence in enumerate(sequence_ids) if sequence == 1]
    first, last = context[0], context[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


# Sentence-pair classification, as run_glue.py with a mean-pooled head


class MeanPooledClassifier(nn.Module):
    """The base, mean pooling over real tokens, dropout and a linear head."""

    def __init__(self, base_dir: Path, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(base_dir, add_pooling_layer=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None) -> dict:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled.float()))
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def train_sentence_pair(
    base_dir: Path,
    tokenizer: PreTrainedTokenizerFast,
    labels: list[str],
    train: list[dict],
    eval_: list[dict],
    settings: RunSettings,
) -> BaselineRun:
    """Return the predicted label of every eval pair."""
    label_index = {label: index for index, label in enumerate(labels)}
    torch.manual_seed(settings.seed)
    model = MeanPooledClassifier(base_dir, len(labels))
    model.encoder = get_peft_model(model.encoder, lora_config(settings, None))
    collator = DataCollatorWithPadding(tokenizer)

    def encode(examples: list[dict]) -> list[dict]:
        encoding = tokenizer(
            [e["text"] for e in examples],
            [e["text_pair"] for e in examples],
            truncation=True,
            max_length=settings.max_length,
        )
        return [
            {**{k: encoding[k][i] for k in MODEL_INPUTS}, "labels": label_index[e["label"]]}
            for i, e in enumerate(examples)
        ]

    seconds = train_with_hf(model, encode(train), collator, settings)

    started = time.perf_counter()
    logits = predict_batches(model, encode(eval_), collator)
    predictions = [labels[int(row.argmax())] for row in logits]
    return BaselineRun(predictions, seconds, time.perf_counter() - started)


# The official SQuAD v1.1 evaluation (evaluate-v1.1.py), function for function


def squad_normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(value: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", value)

    def white_space_fix(value: str) -> str:
        return " ".join(value.split())

    def remove_punc(value: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in value if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(text.lower())))


def squad_f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_exact_match_score(prediction: str, ground_truth: str) -> bool:
    return squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth)


def squad_evaluate(predictions: list[str], gold_answers: list[list[str]]) -> dict[str, float]:
    """Return "exact_match" and "f1" as the official script computes them, in percent."""
    f1 = exact_match = 0.0
    for prediction, ground_truths in zip(predictions, gold_answers, strict=True):
        exact_match += max(squad_exact_match_score(prediction, gt) for gt in ground_truths)
        f1 += max(squad_f1_score(prediction, gt) for gt in ground_truths)
    return {
        "exact_match": 100.0 * exact_match / len(predictions),
        "f1": 100.0 * f1 / len(predictions),
    }
