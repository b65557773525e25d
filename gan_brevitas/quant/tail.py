"""The float tail: quantizers that no int8 consumer needs, found on the folded float model.

A generator ends in a compute layer whose result reaches the model's output only through float
operations (a Tanh kept float, ``(tanh(x) + 1) / 2``, pixel shuffle, a residual add with the
upsampled input). An int8 engine runs that layer from int8 input and weights and hands its
result on in float (TensorRT and OpenVINO do so; ONNX Runtime runs it from the dequantized
tensors), so quantizing its output to 8 bits only adds rounding noise to the image. `float_tail`
traces the whole model with torch.fx (compute layers, activation points and float parts as
leaves) and walks back from the output: every node whose users all lie in the tail is in the
tail; a compute layer reached this way keeps its input and weight quantizers but loses its
output quantizer, and an activation point reached this way stays float. A model whose forward
does not trace keeps every quantizer (the result is then empty).
"""

from __future__ import annotations

import logging

import torch.fx as fx
from torch import nn

from gan_brevitas.quant.points import ActPoint

log = logging.getLogger(__name__)

#: Why a tail quantizer is left out, for `describe`.
TAIL_NOTE = "feeds only float operations up to the model output: no int8 consumer"


class _TailTracer(fx.Tracer):
    def __init__(self, leaves: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


def float_tail(model: nn.Module, compute: tuple[type[nn.Module], ...],
               opaque: tuple[type[nn.Module], ...] = ()) -> tuple[frozenset[str], frozenset[str]]:
    """(compute layers whose output quantizer is not needed, activation points left float).

    ``compute``: the layer types that get quantizers; ``opaque``: float parts traced as leaves.
    """
    try:
        graph = _TailTracer(compute + (ActPoint,) + opaque).trace(model)
    except Exception as err:  # torch.fx raises many types for untraceable code
        log.info("float tail not found, every quantizer kept (%s: %s)", type(err).__name__, str(err)[:120])
        return frozenset(), frozenset()
    modules = dict(model.named_modules())
    tail: set[fx.Node] = set()
    layers: set[str] = set()
    points: set[str] = set()
    for node in reversed(list(graph.nodes)):
        if node.op == "output":
            tail.add(node)
            continue
        if not node.users or not all(user in tail for user in node.users):
            continue
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, compute):
            layers.add(node.target)  # int8 itself: its inputs are not in the tail
            continue
        if isinstance(module, ActPoint):
            points.add(node.target)
        tail.add(node)
    return frozenset(layers), frozenset(points)
