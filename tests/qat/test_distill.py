"""Distillation data: pairs generated once into shards, reused, never overwritten; the loader
splits them over processes by (seed, epoch)."""

import torch
from torch import nn

from gan_brevitas.qat.checkpoint import module_sha256
from gan_brevitas.qat.distill import ShardedPairs, draw_inputs, make_loader, prepare_distillation_data
from gan_brevitas.inputs import latent_sampler


class CountingGenerator(nn.Module):
    """Latent 4 -> 1x2x2 image; counts its calls (to see whether data was regenerated)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, z):
        self.calls += 1
        return torch.tanh(self.linear(z)).view(-1, 1, 2, 2)


def test_shards_hold_float_outputs_and_are_reused(tmp_path):
    torch.manual_seed(0)
    model = CountingGenerator()
    held, train = draw_inputs(latent_sampler(4, seed=3), num_train=10, num_eval=3)
    assert held.shape == (3, 4) and train.shape == (10, 4)
    sha = module_sha256(model)
    directory = prepare_distillation_data(model, held, train, tmp_path, sha, shard_size=4, device=torch.device("cpu"), progress=False)
    assert sorted(p.name for p in directory.glob("shard_*")) == [f"shard_0000{i}.safetensors" for i in range(3)]
    data = ShardedPairs(directory)
    assert len(data) == 10
    with torch.no_grad():
        expected = model(train)
    for i in (0, 3, 4, 9):
        x, y = data[i]
        torch.testing.assert_close(x, train[i])
        torch.testing.assert_close(y, expected[i])
    held_in, held_out = data.held_out()
    torch.testing.assert_close(held_in, held)
    torch.testing.assert_close(held_out, model(held).detach())

    calls = model.calls
    again = prepare_distillation_data(model, held, train, tmp_path, sha, shard_size=4, device=torch.device("cpu"), progress=False)
    assert again == directory and model.calls == calls  # reused, nothing generated

    other = prepare_distillation_data(model, held, train + 1, tmp_path, sha, shard_size=4, device=torch.device("cpu"), progress=False)
    assert other != directory and (directory / "manifest.json").exists()  # the first set is kept


def test_loader_splits_the_epoch_over_processes(tmp_path):
    model = CountingGenerator()
    held, train = draw_inputs(torch.arange(20.0).view(5, 4).repeat(4, 1) + torch.arange(20.0).view(20, 1), 16, 0)
    directory = prepare_distillation_data(model, held, train, tmp_path, "m", 8, torch.device("cpu"), progress=False)
    data = ShardedPairs(directory)
    one, sampler = make_loader(data, 4, rank=0, world_size=1, seed=5)
    sampler.set_epoch(1)
    single = torch.cat([x for x, _ in one])
    parts = []
    for rank in range(2):
        loader, part_sampler = make_loader(data, 2, rank=rank, world_size=2, seed=5)
        part_sampler.set_epoch(1)
        parts.append([x for x, _ in loader])
    # Step k of the two processes together holds exactly step k of the single process.
    for k, batch in enumerate(single.split(4)):
        together = torch.cat([parts[0][k], parts[1][k]])
        assert sorted(together[:, 0].tolist()) == sorted(batch[:, 0].tolist())
    sampler.set_epoch(1)
    torch.testing.assert_close(torch.cat([x for x, _ in one]), single)  # same (seed, epoch), same order
    sampler.set_epoch(2)
    assert not torch.equal(torch.cat([x for x, _ in one]), single)
