"""A read-only index of an ONNX graph: who produces and consumes each tensor, and constants.

The rules checker and the post-export passes both ask "is this input a constant, and what is
its value?" and "which node feeds this one?"; this answers both for initializers and for
``Constant`` nodes without running anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import onnx
from onnx import numpy_helper

from gan_brevitas.errors import ExportError

QUANT_OPS = ("QuantizeLinear", "DequantizeLinear")
#: Ops whose second input is a weight that int8 kernels quantize.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

ModelLike = Union[str, os.PathLike, onnx.ModelProto]


def load_model(source: ModelLike, *, external_data: bool = True) -> onnx.ModelProto:
    """An ONNX model from a path or a ModelProto; ExportError when the file is not a model.

    ``external_data=False`` reads the graph only, leaving tensors stored in external files
    unread (what the rules checker and shape queries need; a huge model stays cheap).
    """
    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if not path.is_file():
        raise ExportError(f"{path} does not exist or is not a file: give the path of an .onnx model.")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as err:  # onnx raises DecodeError, ValueError, ... for foreign files
        raise ExportError(f"{path} is not an ONNX model ({type(err).__name__}: {err}).") from None
    if not model.graph.node:
        raise ExportError(f"{path} is not an ONNX model (it parses, but holds no graph nodes).")
    return model


@dataclass
class GraphIndex:
    """Producers, consumers and constant values of one graph (no subgraphs)."""

    graph: onnx.GraphProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    graph_inputs: set[str] = field(default_factory=set)
    graph_outputs: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, graph: onnx.GraphProto) -> "GraphIndex":
        index = cls(graph)
        index.initializers = {init.name: init for init in graph.initializer}
        index.graph_inputs = {i.name for i in graph.input if i.name not in index.initializers}
        index.graph_outputs = {o.name for o in graph.output}
        for node in graph.node:
            for name in node.output:
                index.producer[name] = node
            for name in node.input:
                if name:
                    index.consumers.setdefault(name, []).append(node)
        return index

    def constant(self, name: str) -> Optional[np.ndarray]:
        """The value of ``name`` if it is an initializer or a Constant node's output, else None."""
        if name in self.initializers:
            tensor = self.initializers[name]
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                return None  # not loaded (load_model(external_data=False)); large tensors are never scales
            return numpy_helper.to_array(tensor)
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def constant_dtype(self, name: str) -> Optional[int]:
        """The ONNX element type of a constant (initializer or Constant node), else None."""
        if name in self.initializers:
            return self.initializers[name].data_type
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return attr.t.data_type
        return None

    def is_constant(self, name: str) -> bool:
        return self.constant_dtype(name) is not None

    def weight_source(self, name: str) -> Optional[str]:
        """The constant behind a weight tensor: itself, or the input of a Clip / Cast /
        Reshape / Transpose chain ending in a constant (Brevitas puts Clip on sub-8-bit
        weights). None when the tensor is computed from graph inputs."""
        seen = 0
        while seen < 8:
            if self.is_constant(name):
                return name
            node = self.producer.get(name)
            if node is None or node.op_type not in ("Clip", "Cast", "Reshape", "Transpose", "Identity"):
                return None
            name = node.input[0]
            seen += 1
        return None


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The value of a node attribute, or ``default``."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def node_label(node: onnx.NodeProto) -> str:
    """A node's name, or its op type and first output when unnamed."""
    return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"


def opset_version(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0
