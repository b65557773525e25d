"""Folded generators export to ONNX (TorchScript exporter, dynamic batch) and match ORT."""

import io
import warnings

import pytest
import torch

from gan_brevitas.models import ResnetGenerator, SAGANGenerator, StyledGenerator, fold_generator

onnxruntime = pytest.importorskip("onnxruntime")

CASES = {
    "stylegan": (
        lambda: StyledGenerator(code_dim=16, n_mlp=2, size=16, channels=8, noise_mode="const"),
        (2, 16),
    ),
    "sagan": (lambda: SAGANGenerator(image_size=32, z_dim=16, conv_dim=8), (2, 16)),
    "cyclegan": (lambda: ResnetGenerator(ngf=8, n_blocks=1, image_size=16), (2, 3, 16, 16)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_folded_generator_exports_with_dynamic_batch(name):
    build, shape = CASES[name]
    torch.manual_seed(0)
    folded = fold_generator(build().eval())
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            folded, (torch.randn(*shape),), buffer, dynamo=False,
            input_names=["x"], dynamic_axes={"x": {0: "batch"}},
        )
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, *shape[1:])  # a batch size other than the traced one
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        expected = folded(x)
    expected = expected[0] if isinstance(expected, tuple) else expected
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
