"""Deployment: QCDQ ONNX export per target, TensorRT rules, ONNX Runtime runner and bench.

* `export_model` / `ExportOptions` (`qcdq`): the ONNX file for "onnxruntime", "tensorrt"
  or "float" (``recipes.export`` is the public entry).
* `check_tensorrt` (`rules`): TensorRT's explicit-quantization rules over any ONNX file.
* `rewrite_conv_transpose` (`subpixel`): exact ConvTranspose -> Conv + PixelShuffle + crop.
* `OrtGenerator`, `int8_kernel_report`, `parity` (`ort`) and `bench` (`bench`): ONNX
  Runtime on the CPU. onnxruntime is imported only when these run.
"""

from gan_brevitas.export.qcdq import TARGETS, ExportOptions, ExportReport, export_model
from gan_brevitas.export.rules import RULES, RulesReport, Violation, check_tensorrt
from gan_brevitas.export.subpixel import SubPixelConvTranspose2d, rewrite_conv_transpose

__all__ = [
    "RULES",
    "TARGETS",
    "ExportOptions",
    "ExportReport",
    "RulesReport",
    "SubPixelConvTranspose2d",
    "Violation",
    "check_tensorrt",
    "export_model",
    "rewrite_conv_transpose",
]
