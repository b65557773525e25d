"""Float-output convolutions of the ONNX Runtime target as int8 ConvInteger.

A conv whose input and weight are dequantized 8-bit tensors but whose output is not quantized
(the default float tail: the generator's last layers keep a float result for quality) has no
int8 kernel in ONNX Runtime: QLinearConv needs a quantized output, so ONNX Runtime runs it as a
float Conv, which on super-resolution generators is most of the time (the last conv runs at the
output resolution).

`float_tail_as_conv_integer` rewrites each such conv as

    ConvInteger(x_q, w_q (+ 128 beside uint8 x_q), x_zero_point, 0 or 128) -> Cast(float) -> Mul(s_x * s_w) [-> Add(bias)]

which computes the same value: beside a uint8 input the weights shift into uint8 (ONNX
Runtime's fast ConvInteger path), the integer accumulation is exact, then one multiply per output
channel dequantizes it (s_x the input scale, s_w the weight scale per channel), and the float
bias is added. The output stays float, as the quantized model computes it.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import onnx

_EIGHT_BIT = (np.int8, np.uint8)


def constant_array(value: Any) -> Optional[np.ndarray]:
    """The array behind an onnx_ir value that is a constant (initializer or folded), else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.attributes.get("value") is not None:
        return producer.attributes["value"].as_tensor().numpy()
    return None


def dequantize_parts(value: Any) -> Optional[tuple[Any, np.ndarray, Optional[np.ndarray], int]]:
    """(8-bit input, scale, zero point or None, axis) of the DequantizeLinear producing
    ``value``; None when ``value`` does not come from one."""
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "DequantizeLinear" or producer.domain not in ("", "ai.onnx"):
        return None
    inputs = list(producer.inputs) + [None] * (3 - len(producer.inputs))
    scale = constant_array(inputs[1])
    zero_point = constant_array(inputs[2]) if inputs[2] is not None else None
    if scale is None or (inputs[2] is not None and zero_point is None):
        return None
    axis = producer.attributes.get("axis")
    return inputs[0], scale, zero_point, (axis.as_int() if axis is not None else 1)


def weight_parts(conv: Any) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(8-bit weight array, per-output-channel scale) of a conv with a symmetric 8-bit
    dequantized constant weight; None otherwise."""
    parts = dequantize_parts(conv.inputs[1])
    if parts is None:
        return None
    weight, scale, zero_point, axis = parts
    values = constant_array(weight)
    if values is None or values.dtype.type not in _EIGHT_BIT or (zero_point is not None and np.any(zero_point)):
        return None
    if scale.size > 1 and axis != 0:
        return None
    return values, np.broadcast_to(scale.astype(np.float32).reshape(-1), (values.shape[0],))


def _kernel_weight(weight: np.ndarray, activation_type: type) -> tuple[np.ndarray, np.ndarray]:
    """(weight, its scalar zero point) for ONNX Runtime's ConvInteger beside an activation of
    ``activation_type``. Beside uint8 activations the weights shift by 128 into uint8 (exactly):
    the uint8 x uint8 kernel is several times faster than uint8 x int8 (measured: 12 vs 95 ms
    for a 64 -> 16 channel 3x3 conv at 192 px). Beside int8 activations they stay int8: ONNX
    Runtime 1.32's int8 x uint8 kernel saturates on AVX2 processors without VNNI (measured on
    an AMD EPYC: errors of 5e4 in the int32 sums at full-range codes), int8 x int8 is exact."""
    if activation_type is np.int8:
        return weight.astype(np.int8), np.array(0, np.int8)
    if weight.dtype == np.uint8:
        return weight, np.array(0, np.uint8)
    return (weight.astype(np.int16) + 128).astype(np.uint8), np.array(128, np.uint8)


def activation_parts(conv: Any) -> Optional[tuple[Any, Any, float]]:
    """(8-bit input value, zero point value, scale) of a conv whose input is a per-tensor
    dequantized 8-bit activation with an explicit zero point; None otherwise."""
    parts = dequantize_parts(conv.inputs[0])
    if parts is None:
        return None
    activation, scale, zero_point, _ = parts
    # the zero point carries the 8-bit type (graphs come without inferred value types)
    if scale.size != 1 or zero_point is None or zero_point.size != 1 or zero_point.dtype.type not in _EIGHT_BIT:
        return None
    return activation, conv.inputs[0].producer().inputs[2], float(scale.reshape(-1)[0])


def runs_float(conv: Any) -> bool:
    """A Conv whose output no QuantizeLinear consumes (ONNX Runtime would run it in float)."""
    if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or len(conv.inputs) < 2:
        return False
    output = conv.outputs[0]
    return not any(user.op_type == "QuantizeLinear" for user, _ in output.uses())


def conv_bias(conv: Any) -> Optional[np.ndarray]:
    """The conv's bias as float32 (a float constant, or a dequantized int32 constant)."""
    if len(conv.inputs) < 3 or conv.inputs[2] is None:
        return None
    values = constant_array(conv.inputs[2])
    if values is not None:
        return values.astype(np.float32)
    parts = dequantize_parts(conv.inputs[2])
    if parts is None or constant_array(parts[0]) is None:
        return None
    quantized, scale, zero_point, _ = parts
    offset = 0 if zero_point is None else zero_point.astype(np.float64)
    return ((constant_array(quantized).astype(np.float64) - offset) * scale.astype(np.float64)).astype(np.float32)


def _rewrite(model: Any, conv: Any) -> bool:
    """Replace one float-output conv by ConvInteger + dequantizing Mul (+ bias Add)."""
    import onnx_ir as ir

    weight = weight_parts(conv)
    activation = activation_parts(conv)
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = conv_bias(conv)
    if weight is None or activation is None or (has_bias and bias is None):
        return False
    weight_values, weight_scale = weight
    x, x_zero_point, x_scale = activation
    name = conv.name or conv.outputs[0].name
    channels = weight_scale.shape[0]
    kernel_weight, weight_zero_point = _kernel_weight(weight_values, constant_array(x_zero_point).dtype.type)
    weight_value = ir.Value(name=f"{name}.integer_weight", const_value=ir.tensor(kernel_weight))
    weight_zero = ir.Value(name=f"{name}.weight_zero_point", const_value=ir.tensor(weight_zero_point))
    model.graph.register_initializer(weight_value)
    model.graph.register_initializer(weight_zero)
    scale = ir.Value(name=f"{name}.int_scale",
                     const_value=ir.tensor((weight_scale * np.float32(x_scale)).reshape(1, channels, 1, 1)))
    model.graph.register_initializer(scale)
    integer = ir.node("ConvInteger", [x, weight_value, x_zero_point, weight_zero], attributes=dict(conv.attributes), name=f"{name}.integer")
    as_float = ir.node("Cast", [integer.outputs[0]], attributes={"to": ir.DataType.FLOAT}, name=f"{name}.cast")
    result = ir.node("Mul", [as_float.outputs[0], scale], name=f"{name}.dequantize")
    added = [integer, as_float, result]
    if bias is not None:
        bias_value = ir.Value(name=f"{name}.float_bias", const_value=ir.tensor(bias.reshape(1, channels, 1, 1)))
        model.graph.register_initializer(bias_value)
        added.append(ir.node("Add", [result.outputs[0], bias_value], name=f"{name}.bias"))
    replace_node(model, conv, added)
    return True


def replace_node(model: Any, node: Any, added: list[Any]) -> None:
    """Insert ``added`` after ``node``, hand the last one's output every use of ``node``'s
    (a graph output keeps its name), and remove ``node``."""
    import onnx_ir as ir

    model.graph.insert_after(node, added)
    output, replacement = node.outputs[0], added[-1].outputs[0]
    name_kept = output.name
    ir.convenience.replace_all_uses_with(output, replacement, replace_graph_outputs=True)
    if replacement.is_graph_output():
        output.name, replacement.name = f"{name_kept}.replaced", name_kept
        replacement.type, replacement.shape = output.type, output.shape
    model.graph.remove(node, safe=True)


def float_tail_as_conv_integer(model_proto: onnx.ModelProto) -> list[str]:
    """Rewrite, in place, every conv that ONNX Runtime would run in float although its input
    and weight are 8-bit (see the module docstring); returns the rewritten convs' names."""
    import onnx_ir as ir
    import onnx_ir.passes.common

    model = ir.from_proto(model_proto)
    rewritten = [conv.name for conv in list(model.graph) if runs_float(conv) and _rewrite(model, conv)]
    if rewritten:
        onnx_ir.passes.common.RemoveUnusedNodesPass()(model)
        model_proto.CopyFrom(ir.to_proto(model))
    return rewritten
