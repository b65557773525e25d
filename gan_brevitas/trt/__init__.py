"""TensorRT deployment of gan-brevitas exports: build an int8 engine, run it, time it, measure it.

Needs TensorRT and pycuda on a machine with an NVIDIA GPU (the ``trt`` extra); neither installs
on our CPU machines, so they are imported lazily and the tests skip without them. See
docs/tensorrt.md. `engine`: build, run and time an engine; `evaluate`: the command
``python -m gan_brevitas.trt.evaluate`` (latency, qFID, FID of an engine's images).
"""
