"""Activation quantization points beyond conv inputs and outputs: after LeakyReLU / PReLU, on
the inputs and the output of residual adds and concatenations.

Why: an int8 engine keeps a tensor in 8 bits between two int8 layers only when every op on
the way has quantized inputs and output. A PReLU between two convs, or the ``x + body(x)`` of
a residual block, otherwise runs in float between a DequantizeLinear and a QuantizeLinear
(ONNX Runtime), or breaks OpenVINO's low-precision chain. So the folded float model gets
identity `ActPoint` modules at those places; `quantize_model` turns each into a Brevitas
activation quantizer, calibrated like the others (same names in the float and the quantized
model).

* Activation modules (`ACTIVATIONS`) are wrapped as ``Requantized(act, ActPoint)``.
* Functional joins (``x + y``, ``torch.add``, ``torch.cat``) are found by tracing each module's
  OWN forward with torch.fx (its children stay opaque), and a module that has them becomes an
  fx GraphModule with the same children, name and attributes plus the points. A module whose
  forward does not trace (data-dependent control flow) keeps its joins in float; the reason is
  stored on it (`FLOAT_NOTE`) and `describe` lists it.

Inserting points never changes the float model's output (they are identities).
"""

from __future__ import annotations

import inspect
import logging
import operator
import re
from typing import Any, Callable, Iterator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: Activation modules whose output gets its own quantizer.
ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.LeakyReLU, nn.PReLU)
#: fx targets of functional joins -> the word used in point names and reports.
JOINS: dict[Callable[..., Any], str] = {
    operator.add: "add", operator.iadd: "add", torch.add: "add", torch.cat: "cat", torch.concat: "cat",
}
#: Functional activations whose output gets a point.
FUNCTIONAL_ACTIVATIONS: dict[Callable[..., Any], str] = {F.leaky_relu: "leaky_relu", F.prelu: "prelu"}
#: Attribute set on a module whose joins could not be given points (value: the reason).
FLOAT_NOTE = "gan_brevitas_float_note"
#: Producers whose outputs are not tensors (sizes, shapes, indices): never quantized.
_NON_TENSOR = {getattr, operator.getitem, len}
_NON_TENSOR_METHODS = {"size", "dim", "numel", "item", "tolist"}
_JOIN_SOURCE = re.compile(r"\+|torch\.(cat|concat|add)\b|\bcat\(|leaky_relu|prelu")


class ActPoint(nn.Module):
    """Identity in the float model; a quantization point once converted.

    Attributes:
        role: what the point quantizes (e.g. "LeakyReLU output", "add input 1"), for reports.
    """

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return repr(self.role)


class Requantized(nn.Module):
    """``point(module(x))``: an activation whose output is quantized."""

    def __init__(self, module: nn.Module, point: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.point = point

    def forward(self, x: Tensor) -> Tensor:
        return self.point(self.module(x))


class _OwnForwardTracer(fx.Tracer):
    """Traces one module's forward; every child module is a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _is_tensor_node(arg: Any) -> bool:
    if not isinstance(arg, fx.Node):
        return False
    if arg.op == "call_function" and arg.target in _NON_TENSOR:
        return False
    return not (arg.op == "call_method" and arg.target in _NON_TENSOR_METHODS)


def _join_inputs(node: fx.Node) -> list[fx.Node]:
    """The tensor inputs of a join node ([] when it is not a join of two or more tensors)."""
    if node.op != "call_function":
        return []
    kind = JOINS.get(node.target)
    if kind == "add":
        inputs = [a for a in node.args[:2] if _is_tensor_node(a)]
        return inputs if len(inputs) == 2 else []
    if kind == "cat":
        seq = node.args[0] if node.args else node.kwargs.get("tensors", ())
        inputs = [a for a in seq if _is_tensor_node(a)] if isinstance(seq, (list, tuple)) else []
        return inputs if len(inputs) == len(seq) and len(inputs) >= 2 else []
    return []


def _add_point(gm_root: nn.Module, graph: fx.Graph, after: fx.Node, name: str, role: str) -> fx.Node:
    gm_root.add_module(name, ActPoint(role))
    with graph.inserting_after(after):
        return graph.call_module(name, (after,))


def _rewrite_graph(module: nn.Module, graph: fx.Graph) -> int:
    """Insert points (modules added to ``module``) around joins and functional activations."""
    count = 0
    for node in list(graph.nodes):
        inputs = _join_inputs(node)
        if inputs:
            kind = JOINS[node.target]
            index = count
            for i, source in enumerate(inputs):
                with graph.inserting_before(node):
                    point_name = f"quant_{kind}{index}_in{i}"
                    module.add_module(point_name, ActPoint(f"{kind} input {i}"))
                    point = graph.call_module(point_name, (source,))
                node.replace_input_with(source, point)
            out = _add_point(module, graph, node, f"quant_{kind}{index}_out", f"{kind} output")
            node.replace_all_uses_with(out, delete_user_cb=lambda user, out=out: user is not out)
            count += 1
        elif node.op == "call_function" and node.target in FUNCTIONAL_ACTIVATIONS:
            kind = FUNCTIONAL_ACTIVATIONS[node.target]
            out = _add_point(module, graph, node, f"quant_{kind}{count}_out", f"{kind} output")
            node.replace_all_uses_with(out, delete_user_cb=lambda user, out=out: user is not out)
            count += 1
    return count


def _plain_attributes(module: nn.Module) -> dict[str, Any]:
    """Public non-module attributes (input_kind, image_size, ...) that a GraphModule would lose."""
    values = {}
    for klass in reversed(type(module).__mro__):
        if klass in (nn.Module, object):
            continue
        for key, value in vars(klass).items():
            if not key.startswith("_") and isinstance(value, (str, int, float, bool, tuple, type(None))):
                values[key] = value
    values.update({k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"})
    return values


def _with_points(module: nn.Module) -> nn.Module | None:
    """A GraphModule copy of ``module`` with points at its joins, None when it has none.

    Raises whatever torch.fx raises when the forward cannot be traced.
    """
    graph = _OwnForwardTracer().trace(module)
    if not any(_join_inputs(n) or (n.op == "call_function" and n.target in FUNCTIONAL_ACTIVATIONS)
               for n in graph.nodes):
        return None
    _rewrite_graph(module, graph)
    graph.lint()
    rewritten = fx.GraphModule(module, graph, class_name=type(module).__name__)
    for key, value in _plain_attributes(module).items():
        if not hasattr(rewritten, key):
            setattr(rewritten, key, value)
    rewritten.train(module.training)
    return rewritten


def _may_join(module: nn.Module) -> bool:
    try:
        source = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False
    return bool(_JOIN_SOURCE.search(source))


def _candidates(model: nn.Module, opaque: tuple[type[nn.Module], ...]) -> Iterator[tuple[str, nn.Module]]:
    """Modules whose own forward may hold joins, deepest first, outside ``opaque`` types."""
    found = []
    skipped: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in skipped):
            continue
        if isinstance(module, opaque) or isinstance(module, (ActPoint, Requantized, fx.GraphModule)):
            skipped.append(name)
            continue
        if type(module).__module__.startswith(("torch.", "brevitas.")):
            continue
        if _may_join(module):
            found.append((name, module))
    return iter(reversed(found))


def _set(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if not name:
        return new
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def insert_act_points(model: nn.Module, opaque: tuple[type[nn.Module], ...] = ()) -> nn.Module:
    """Insert `ActPoint`s into ``model`` (in place where possible) and return the model (a new
    object only when the root module itself was rewritten). ``opaque``: module types left as
    they are, children included (parts kept float on purpose)."""
    for name, module in list(model.named_modules()):
        if type(module) in ACTIVATIONS and not _inside(model, name, opaque):
            model = _set(model, name, Requantized(module, ActPoint(f"{type(module).__name__} output")))
    for name, module in list(_candidates(model, opaque)):
        try:
            rewritten = _with_points(module)
        except Exception as err:  # torch.fx raises many types for untraceable code
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            setattr(module, FLOAT_NOTE, f"forward not traceable by torch.fx ({reason[:120]}); its adds / "
                    "concatenations, if any, stay float")
            log.info("%s: %s", name or "<model>", getattr(module, FLOAT_NOTE))
            continue
        if rewritten is not None:
            model = _set(model, name, rewritten)
    return model


def _inside(model: nn.Module, name: str, opaque: tuple[type[nn.Module], ...]) -> bool:
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), opaque) for i in range(len(parts)))
