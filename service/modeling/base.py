"""Loading a local Hugging Face encoder folder as the shared base model.

Nothing is downloaded: the folder must hold `config.json`, the weights (`model.safetensors` or
`pytorch_model.bin`) and a fast tokenizer. A sentence-transformers folder (`modules.json` with a
Pooling module) is pooled the way it was trained; a plain checkpoint uses its [CLS] pooler.
"""

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from service.modeling.encoder import Encoder, EncoderConfig

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta")
POOLING_MODES = ("mean", "cls", "max", "cls_pooler")

# Prefixes that task-specific checkpoints put before the encoder's own parameter names.
_STATE_DICT_PREFIXES = ("bert.", "roberta.", "model.")


class BaseModelError(ValueError):
    """Raised when a base model folder cannot be used."""


@dataclass(frozen=True)
class BaseModelSpec:
    """What a base model folder contains, read without loading the weights."""

    path: Path
    config: EncoderConfig
    pooling: str
    has_pooler: bool
    weights_file: Path
    max_seq_length: int | None
    # False for a sentence-transformers bi-encoder: it was fine-tuned on single texts only, so
    # its encoder runs the second text of a pair (or a QA context) as segment 0 too.
    segment_ids: bool = True


def read_base_model_spec(path: Path) -> BaseModelSpec:
    """Read the encoder config and pooling of a base model folder."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BaseModelError(
            f"Base model folder {path} has no config.json; set LORAPLEX_BASE_MODEL_DIR to a local "
            "Hugging Face encoder folder."
        )
    raw_config = json.loads(config_file.read_text())
    model_type = raw_config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise BaseModelError(
            f"Base model type {model_type!r} is not supported (yet); supported types: "
            f"{list(SUPPORTED_MODEL_TYPES)}."
        )
    weights_file = _find_weights_file(path)
    has_pooler = any(key.endswith("pooler.dense.weight") for key in _read_keys(weights_file))
    pooling, max_seq_length = _read_sentence_transformers_pooling(path)
    if pooling is None:
        pooling = "cls_pooler" if has_pooler else "cls"
    return BaseModelSpec(
        path=path,
        config=EncoderConfig.from_hf_dict(raw_config),
        pooling=pooling,
        has_pooler=has_pooler and pooling == "cls_pooler",
        weights_file=weights_file,
        max_seq_length=max_seq_length,
        segment_ids=not (path / "modules.json").is_file(),
    )


def _find_weights_file(path: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise BaseModelError(
        f"Base model folder {path} has neither model.safetensors nor pytorch_model.bin."
    )


def _read_keys(weights_file: Path) -> list[str]:
    if weights_file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(weights_file, framework="pt") as handle:
            return list(handle.keys())
    return list(torch.load(weights_file, map_location="cpu", weights_only=True))


def _read_sentence_transformers_pooling(path: Path) -> tuple[str | None, int | None]:
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None, None
    max_seq_length = None
    bert_config = path / "sentence_bert_config.json"
    if bert_config.is_file():
        max_seq_length = json.loads(bert_config.read_text()).get("max_seq_length")
    for module in json.loads(modules_file.read_text()):
        if module.get("type", "").endswith("Pooling"):
            pooling_config = json.loads((path / module["path"] / "config.json").read_text())
            if pooling_config.get("pooling_mode_mean_tokens"):
                return "mean", max_seq_length
            if pooling_config.get("pooling_mode_cls_token"):
                return "cls", max_seq_length
            if pooling_config.get("pooling_mode_max_tokens"):
                return "max", max_seq_length
            raise BaseModelError(
                f"Pooling config in {path / module['path']} uses a mode that is not supported "
                "(yet); supported: mean, cls, max."
            )
    return None, max_seq_length


@lru_cache(maxsize=4)
def fingerprint_base_model(path: Path) -> str:
    """Return the sha256 of the folder's config and weights: deltas record it to match bases."""
    spec = read_base_model_spec(path)
    digest = hashlib.sha256()
    digest.update((Path(path) / "config.json").read_bytes())
    with open(spec.weights_file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_encoder(spec: BaseModelSpec) -> Encoder:
    """Build an `Encoder` with the folder's weights, all of them frozen, in eval mode."""
    if spec.weights_file.suffix == ".safetensors":
        state = load_file(spec.weights_file)
    else:
        state = torch.load(spec.weights_file, map_location="cpu", weights_only=True)

    encoder = Encoder(spec.config, with_pooler=spec.has_pooler)
    wanted = encoder.state_dict()
    cleaned: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for prefix in _STATE_DICT_PREFIXES:
            if key.startswith(prefix) and key.removeprefix(prefix) in wanted:
                key = key.removeprefix(prefix)
                break
        if key in wanted:
            cleaned[key] = tensor
    missing = sorted(set(wanted) - set(cleaned))
    if missing:
        raise BaseModelError(
            f"Base model weights in {spec.weights_file} lack {len(missing)} tensors, "
            f"for example {missing[:3]}; is it a BERT-family encoder?"
        )
    encoder.load_state_dict(cleaned, strict=True)
    encoder.reads_token_types = spec.segment_ids
    encoder.requires_grad_(False)
    return encoder.eval()


_tokenizer_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load_tokenizer_cached(path: str) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)
    if not tokenizer.is_fast:
        raise BaseModelError(f"Base model folder {path} has no fast tokenizer (tokenizer.json).")
    return tokenizer


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """Return the base model's fast tokenizer, loaded once per process."""
    with _tokenizer_lock:
        return _load_tokenizer_cached(str(path))


@dataclass
class BaseModel:
    """The loaded shared base: frozen encoder, tokenizer, pooling and fingerprint."""

    spec: BaseModelSpec
    encoder: Encoder
    tokenizer: PreTrainedTokenizerFast
    fingerprint: str

    @property
    def pooling(self) -> str:
        return self.spec.pooling


def load_base_model(path: Path) -> BaseModel:
    """Load the base model folder at `path` with frozen weights."""
    spec = read_base_model_spec(path)
    encoder = build_encoder(spec)
    logger.info(
        "base model loaded from %s (%s, %d layers, hidden %d, pooling %s)",
        path,
        spec.config.model_type,
        spec.config.num_hidden_layers,
        spec.config.hidden_size,
        spec.pooling,
    )
    return BaseModel(
        spec=spec,
        encoder=encoder,
        tokenizer=load_tokenizer(path),
        fingerprint=fingerprint_base_model(Path(path)),
    )
