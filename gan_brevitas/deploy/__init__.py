"""Running exported generators on the CPU engines: ONNX Runtime and OpenVINO.

* `open_runner(path, engine, threads)` (`runner`): one runner interface for both engines;
  `EngineModule` wraps one as a torch module (metrics on the deployed file).
* `bench` (`bench`): interleaved latency per batch size, optionally against a baseline.
* `parity` (`parity`): deployed outputs vs the fake-quant model, in output steps.
* `openvino`: the OpenVINO runner (compilation, IR and the precision report:
  `gan_brevitas.export.openvino`; ONNX Runtime's: `gan_brevitas.export.ort`).
Engines are imported only when used.
"""

from gan_brevitas.deploy.runner import ENGINES, EngineModule, Runner, open_runner

__all__ = ["ENGINES", "EngineModule", "Runner", "open_runner"]
