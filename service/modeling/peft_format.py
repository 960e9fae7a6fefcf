"""Conversion between Loraplex LoRA deltas and PEFT's saved adapter layout.

PEFT saves `adapter_model.safetensors` with keys such as
`base_model.model.encoder.layer.0.attention.self.query.lora_A.weight` (`[r, in]`) and
`...lora_B.weight` (`[out, r]`), and `adapter_config.json` with `r`, `lora_alpha`,
`use_rslora` and `target_modules`. The update is `scale · B·A` with scale alpha/r
(alpha/√r with rsLoRA), as in Loraplex.
"""

import math

import torch

PEFT_PREFIX = "base_model.model."
# Prefixes that task models (BertForSequenceClassification...) put before the encoder.
MODEL_PREFIXES = ("bert.", "roberta.", "model.")


def lora_from_peft_state_dict(
    state: dict[str, torch.Tensor],
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Return `{module path: (lora_A, lora_B)}` from a PEFT adapter state dict."""
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, lora_A in state.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removesuffix(".lora_A.weight")
        lora_B = state.get(f"{module}.lora_B.weight")
        if lora_B is None:
            raise ValueError(f"PEFT state dict has {key!r} but no matching lora_B weight.")
        path = module.removeprefix(PEFT_PREFIX)
        for prefix in MODEL_PREFIXES:
            path = path.removeprefix(prefix)
        lora[path] = (lora_A.float(), lora_B.float())
    if not lora:
        raise ValueError(
            "PEFT state dict contains no LoRA weights (no keys ending in .lora_A.weight)."
        )
    return lora


def peft_state_dict_from_lora(
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Return a PEFT adapter state dict for a plain encoder (`AutoModel`) base."""
    state = {}
    for path, (lora_A, lora_B) in lora.items():
        state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = lora_A.contiguous()
        state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = lora_B.contiguous()
    return state


def peft_scale(rank: int, alpha: float, use_rslora: bool = False) -> float:
    """Return PEFT's LoRA scale for rank `rank` and `alpha`."""
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank
