"""Deployment: QCDQ ONNX export per target, TensorRT rules, ONNX Runtime runner and bench.

* `export_model` / `ExportOptions` (`qcdq`): the ONNX file for "onnxruntime", "tensorrt"
  or "float" (``recipes.export`` is the public entry).
* `check_tensorrt` (`rules`): TensorRT's explicit-quantization rules over any ONNX file.
* `rewrite_conv_transpose` (`subpixel`): exact ConvTranspose -> Conv + PixelShuffle + crop.
* `OrtGenerator`, `int8_kernel_report`, `parity` (`ort`) and `bench` (`bench`): ONNX
  Runtime on the CPU. onnxruntime is imported only when these run.
"""

import importlib

#: Public name -> submodule; imported on first use so that `gan-brevitas --help` (which
#: registers the export commands) does not import torch.
_SUBMODULE = {
    "TARGETS": "qcdq", "ExportOptions": "qcdq", "ExportReport": "qcdq", "export_model": "qcdq",
    "RULES": "rules", "RulesReport": "rules", "Violation": "rules", "check_tensorrt": "rules",
    "SubPixelConvTranspose2d": "subpixel", "rewrite_conv_transpose": "subpixel",
}


def __getattr__(name: str):
    if name in _SUBMODULE:
        return getattr(importlib.import_module(f"gan_brevitas.export.{_SUBMODULE[name]}"), name)
    raise AttributeError(f"module 'gan_brevitas.export' has no attribute {name!r}")


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
