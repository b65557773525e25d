"""GAN generators in the parameter layouts of their public reference implementations.

* ``build_generator(name, **kwargs)``: "stylegan" (rosinality StyledGenerator), "sagan"
  (heykeetae Generator), "cyclegan" (junyanz ResnetGenerator); ``ARCHITECTURES`` holds what
  the package knows about each family (`registry.Architecture`).
* ``load_generator(name, path, **kwargs)``: build + strict load of a reference checkpoint.
* ``fold_generator(model)``: copy with equal-LR / fused-upsample / spectral-norm layers turned
  into plain ``nn.Linear`` / ``nn.Conv2d`` / ``nn.ConvTranspose2d`` (exact).
* ``float_parts(model)``: the modules that stay in floating point, with the reason.

Every generator has ``input_kind`` ("latent" with ``latent_dim``, or "image" with
``in_channels``) and ``image_size``, so callers can build sample inputs.
"""

from gan_brevitas.models.cyclegan import ResnetGenerator
from gan_brevitas.models.discriminators import ConvDiscriminator, NLayerDiscriminator, build_discriminator
from gan_brevitas.models.float_parts import float_parts
from gan_brevitas.models.fold import fold_generator
from gan_brevitas.models.load import load_generator, load_state_dict_file
from gan_brevitas.models.registry import ARCHITECTURES, GENERATORS, Architecture, architecture, architecture_of, build_generator
from gan_brevitas.models.sagan import Generator as SAGANGenerator
from gan_brevitas.models.stylegan import StyledGenerator

__all__ = [
    "ARCHITECTURES",
    "GENERATORS",
    "Architecture",
    "architecture",
    "architecture_of",
    "ConvDiscriminator",
    "NLayerDiscriminator",
    "ResnetGenerator",
    "SAGANGenerator",
    "StyledGenerator",
    "build_discriminator",
    "build_generator",
    "float_parts",
    "fold_generator",
    "load_generator",
    "load_state_dict_file",
]
