"""gan-brevitas: quantization of GAN generators with Brevitas."""
