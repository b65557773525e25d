"""The architecture registry: each family's entry describes the models it builds."""

import pytest
import torch

from gan_brevitas.errors import ConfigError
from gan_brevitas.models import ARCHITECTURES, architecture, architecture_of, build_generator

SMALL = {
    "stylegan": dict(size=16, channels=[32, 32, 16, 16, 8, 8, 8, 8, 8], code_dim=16, n_mlp=2),
    "sagan": dict(image_size=32, z_dim=16, conv_dim=8),
    "cyclegan": dict(ngf=8, n_blocks=2, image_size=16),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_entry_matches_the_models_it_builds(name):
    family = architecture(name)
    model = build_generator(name, **SMALL[name])
    assert architecture_of(model) is family and isinstance(model, family.generator)
    assert model.input_kind == family.input_kind
    state = model.state_dict()
    assert family.signature_key in state
    assert [n for n, other in ARCHITECTURES.items() if other.signature_key in state] == [name]
    inferred = family.infer_kwargs(state)
    rebuilt = build_generator(name, **{**SMALL[name], **inferred})
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in state.items()}
    size = build_generator(name, **{**SMALL[name], family.size_argument: 32}).image_size
    assert size == 32
    if family.input_kind == "latent":  # the latent size argument is named by the entry
        assert build_generator(name, **{**SMALL[name], family.latent_argument: 12}).latent_dim == 12
    else:
        assert family.latent_argument is None


def test_unknown_name_suggests_and_user_models_have_no_entry():
    with pytest.raises(ConfigError, match=r"unknown generator 'stylgan' \(did you mean 'stylegan'\?\)"):
        architecture("stylgan")
    assert architecture_of(torch.nn.Sequential(torch.nn.Linear(2, 2))) is None
