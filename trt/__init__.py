"""TensorRT deployment of gan-brevitas exports: build an int8 engine, run it, time it, measure it.

Needs TensorRT and pycuda on a machine with an NVIDIA GPU (the ``trt`` extra); neither installs
on our CPU machines, so they are imported lazily and the tests skip without them. See
trt/README.md.
"""
