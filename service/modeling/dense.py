"""Deltas applied to an encoder's own weights: dedicated copies and merged starting points.

A job with `keep_dense` stores its trained encoder tensors in the delta's `dense` field. Slot
tables cannot serve that, so the serving engine builds a dedicated encoder copy for it with
`build_dedicated_encoder`. `merge_delta_into_encoder` folds a servable delta into an encoder's
weights, so a dense strategy can continue from an existing adapter version.
"""

import torch

from service.modeling.base import BaseModelSpec, build_encoder
from service.modeling.delta import Delta
from service.modeling.encoder import Encoder
from service.modeling.slots import norm_layer_path


def build_dedicated_encoder(spec: BaseModelSpec, delta: Delta) -> Encoder:
    """Build a frozen encoder in eval mode with the base's weights and `delta.dense` loaded.

    Serve the delta's rows through it with `route=None`, then pool and apply the delta's head
    as for any other adapter. It is a full copy: `encoder_nbytes` gives its memory.

    Raises:
        ValueError: the delta has no dense tensors, or one that the base lacks or whose shape
            differs.
    """
    if not delta.dense:
        raise ValueError("Delta has no dense update, so serve it from the shared base's slots.")
    encoder = build_encoder(spec)
    state = encoder.state_dict()
    for name, tensor in delta.dense.items():
        if name not in state:
            raise ValueError(f"Dense tensor {name!r} of the delta is not a parameter of the base.")
        if state[name].shape != tensor.shape:
            raise ValueError(
                f"Dense tensor {name!r} has shape {tuple(tensor.shape)}, but the base's has "
                f"{tuple(state[name].shape)}."
            )
    with torch.no_grad():
        for name, tensor in delta.dense.items():
            state[name].copy_(tensor)
    return encoder.eval()


def encoder_nbytes(encoder: Encoder) -> int:
    """Return the bytes of an encoder's parameters and buffers."""
    tensors = [*encoder.parameters(), *encoder.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def merge_delta_into_encoder(encoder: Encoder, delta: Delta) -> None:
    """Fold `delta`'s encoder update into `encoder`'s own weights, in place.

    The merged layer computes what the slot path computes for that delta: with input scale
    s_in, output scale s_out and bias change db, W' = diag(s_out)·(W + scale·B·A)·diag(s_in)
    and b' = s_out ⊙ (b + db).

    Raises:
        ValueError: the delta has bottleneck adapters, which are not linear and so cannot be
            merged (not supported yet), or it targets layers the encoder lacks.
    """
    if delta.adapters:
        raise ValueError(
            "Merging bottleneck adapters into dense weights is not supported (yet). Continue "
            "from this version with the adapter strategy."
        )
    state = encoder.state_dict()
    for name, tensor in delta.dense.items():
        state[name].copy_(tensor)

    layers = encoder.adapted_layers()
    paths = set(delta.lora) | set(delta.bias) | set(delta.input_scale) | set(delta.output_scale)
    paths |= {norm_layer_path(path) for path in delta.layer_norm}
    unknown = sorted(paths - set(layers))
    if unknown:
        raise ValueError(f"Delta targets layers the base model lacks, for example {unknown[:2]}.")

    for path, (lora_A, lora_B) in delta.lora.items():
        weight = layers[path].weight
        weight += (delta.lora_scale * lora_B.double() @ lora_A.double()).to(weight)
    for path, change in delta.bias.items():
        bias = layers[path].bias
        assert bias is not None, f"{path} has no bias"
        bias += change.to(bias)
    for path, scale in delta.input_scale.items():
        layers[path].weight.mul_(scale.to(layers[path].weight)[None, :])
    for path, scale in delta.output_scale.items():
        layer = layers[path]
        layer.weight.mul_(scale.to(layer.weight)[:, None])
        if layer.bias is not None:
            layer.bias.mul_(scale.to(layer.bias))
    for path, (weight_change, bias_change) in delta.layer_norm.items():
        layer_norm = encoder.get_submodule(path)
        layer_norm.weight += weight_change.to(layer_norm.weight)
        layer_norm.bias += bias_change.to(layer_norm.bias)
