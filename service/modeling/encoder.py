"""A BERT-family encoder whose linear layers take a per-call adapter route.

Module names follow the Hugging Face BERT layout (`encoder.layer.3.attention.self.query`), so a
checkpoint's state dict loads by name and deltas are keyed by the same paths.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from service.modeling.lora import AdaptedLinear, AdapterRoute

# LoRA target name -> module path inside one `Block`.
TARGET_PATHS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
}


@dataclass(frozen=True)
class EncoderConfig:
    """Shape and behaviour of the encoder, read from a Hugging Face `config.json`."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float
    hidden_act: str
    pad_token_id: int

    @property
    def position_offset(self) -> int:
        # RoBERTa numbers positions from padding_idx + 1; BERT from 0.
        return self.pad_token_id + 1 if self.model_type in ("roberta", "xlm-roberta") else 0

    @classmethod
    def from_hf_dict(cls, config: dict) -> "EncoderConfig":
        return cls(
            model_type=config["model_type"],
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=config["num_attention_heads"],
            intermediate_size=config["intermediate_size"],
            max_position_embeddings=config["max_position_embeddings"],
            type_vocab_size=config.get("type_vocab_size", 2),
            layer_norm_eps=config.get("layer_norm_eps", 1e-12),
            hidden_dropout_prob=config.get("hidden_dropout_prob", 0.1),
            attention_probs_dropout_prob=config.get("attention_probs_dropout_prob", 0.1),
            hidden_act=config.get("hidden_act", "gelu"),
            pad_token_id=config.get("pad_token_id", 0) or 0,
        )


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_offset = config.position_offset

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        if self.position_offset:
            # RoBERTa: padding keeps position padding_idx, real tokens count up from offset.
            positions = torch.cumsum(attention_mask, dim=1) * attention_mask
            positions = positions + (self.position_offset - 1)
        else:
            positions = torch.arange(seq_len, device=input_ids.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(hidden))


class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = AdaptedLinear(config.hidden_size, config.hidden_size)
        self.key = AdaptedLinear(config.hidden_size, config.hidden_size)
        self.value = AdaptedLinear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        # A trainer may set its own dropout module on the attention probabilities. In training
        # mode the scores are then computed explicitly instead of by the fused kernel.
        self.attention_dropout: nn.Module | None = None

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, route: AdapterRoute | None
    ) -> torch.Tensor:
        batch, seq_len, width = hidden.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            # [B, T, H*D] -> [B, H, T, D]
            return x.view(batch, seq_len, self.num_heads, self.head_dim).transpose(1, 2)

        q = heads(self.query(hidden, route))
        k = heads(self.key(hidden, route))
        v = heads(self.value(hidden, route))
        if self.attention_dropout is not None and self.training:
            # [B, H, T, D] @ [B, H, D, T] -> scores [B, H, T, T]
            scores = torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5
            scores = scores.masked_fill(~mask, float("-inf"))
            context = torch.matmul(self.attention_dropout(scores.softmax(dim=-1)), v)
        else:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
            )
        return context.transpose(1, 2).reshape(batch, seq_len, width)


class ResidualOutput(nn.Module):
    """Projection back to the hidden size, dropout, residual add and LayerNorm."""

    def __init__(self, in_features: int, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = AdaptedLinear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, context: torch.Tensor, residual: torch.Tensor, route: AdapterRoute | None
    ) -> torch.Tensor:
        pre_norm = self.dropout(self.dense(context, route)) + residual
        normed = self.LayerNorm(pre_norm)
        if self.dense.norm_delta is not None:
            normed = self.dense.norm_delta.apply(normed, pre_norm, self.LayerNorm.eps, route)
        return normed


class Attention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.self = SelfAttention(config)
        self.output = ResidualOutput(config.hidden_size, config)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, route: AdapterRoute | None
    ) -> torch.Tensor:
        return self.output(self.self(hidden, mask, route), hidden, route)


class Intermediate(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = AdaptedLinear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden: torch.Tensor, route: AdapterRoute | None) -> torch.Tensor:
        return self.activation(self.dense(hidden, route))


class Block(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = ResidualOutput(config.intermediate_size, config)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, route: AdapterRoute | None
    ) -> torch.Tensor:
        attended = self.attention(hidden, mask, route)
        return self.output(self.intermediate(attended, route), attended, route)


class Layers(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    """BERT's [CLS] pooler: tanh(W·h_cls + b)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class Encoder(nn.Module):
    """The shared encoder. `forward` returns the last hidden states `[B, T, hidden_size]`."""

    def __init__(self, config: EncoderConfig, with_pooler: bool = False) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Layers(config)
        self.pooler = Pooler(config) if with_pooler else None
        # dtype of the hidden states passed between blocks; None keeps the embeddings' dtype.
        # A trainer under bf16 autocast sets bf16, so the residual stream is not cast back and
        # forth around every matmul (LayerNorm still normalises in fp32 internally).
        self.residual_dtype: torch.dtype | None = None
        # False runs every token as segment 0 and ignores token_type_ids (see
        # BaseModelSpec.segment_ids).
        self.reads_token_types = True

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        route: AdapterRoute | None = None,
    ) -> torch.Tensor:
        if not self.reads_token_types:
            token_type_ids = None
        hidden = self.embeddings(input_ids, token_type_ids, attention_mask)
        if self.residual_dtype is not None:
            hidden = hidden.to(self.residual_dtype)
        # Boolean mask [B, 1, 1, T]: True where a key may be attended to.
        mask = attention_mask.bool()[:, None, None, :]
        for block in self.encoder.layer:
            hidden = block(hidden, mask, route)
        return hidden

    def adapted_layers(self, targets: list[str] | None = None) -> dict[str, AdaptedLinear]:
        """Return the adapted linear layers by module path, optionally only the named targets."""
        wanted = [TARGET_PATHS[t] for t in (targets or TARGET_PATHS)]
        layers: dict[str, AdaptedLinear] = {}
        for index, block in enumerate(self.encoder.layer):
            for path in wanted:
                layers[f"encoder.layer.{index}.{path}"] = block.get_submodule(path)
        return layers
