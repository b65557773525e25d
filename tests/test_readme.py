"""Every fenced bash / python block of README.md runs, in order, in one fresh folder.

A block runs verbatim unless the line above it is ``<!-- readme-test: WHY; instead: COMMAND -->``:
then COMMAND, the short variant of a long job (or of one that needs a GPU or a file this machine
cannot have), runs in its place and WHY says what is replaced. The folder holds what the README
tells a user to bring: a CycleGAN checkpoint ``latest_net_G.pth`` with ``horses/`` and ``zebras/``
photos, a SAGAN ``sagan_G.pth``, and a generator class of their own (``mypkg/nets.py``, ``my_g.pth``),
all tiny and random.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!-- readme-test: (.*?); instead: (.*?) -->\s*$")
BLOCK_TIMEOUT_S = 900

USER_MODULE = '''
import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self, latent=128, width=8):
        super().__init__()
        self.width = width
        self.fc = nn.Linear(latent, width * 4 * 4)
        self.up = nn.ConvTranspose2d(width, 3, 4, 2, 1)

    def forward(self, z):
        return torch.tanh(self.up(torch.relu(self.fc(z)).view(-1, self.width, 4, 4)))
'''


@dataclass(frozen=True)
class Block:
    index: int
    language: str
    code: str
    why: str = ""  # non-empty when a short variant runs instead

    @property
    def id(self) -> str:
        first = self.code.strip().splitlines()[0][:50]
        return f"{self.index}-{self.language}-{'short' if self.why else 'verbatim'}: {first}"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for index, match in enumerate(BLOCK.finditer(text)):
        before = text[: match.start()].rstrip().splitlines()[-1]
        mark = MARK.search(before)
        if mark:
            blocks.append(Block(index, match.group(1), mark.group(2), mark.group(1)))
        else:
            blocks.append(Block(index, match.group(1), match.group(2)))
    return blocks


BLOCKS = readme_blocks()


def _images(folder: Path, count: int, seed: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """The user's folder, and which blocks already ran in it."""
    from gan_brevitas import recipes

    root = tmp_path_factory.mktemp("readme")
    torch.manual_seed(0)
    torch.save(recipes.build_generator("cyclegan", ngf=8, n_blocks=2).state_dict(), root / "latest_net_G.pth")
    torch.save(recipes.build_generator("sagan", z_dim=32, image_size=16, conv_dim=8).state_dict(), root / "sagan_G.pth")
    _images(root / "horses", 4, seed=0)
    _images(root / "zebras", 4, seed=1)
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "nets.py").write_text(USER_MODULE)
    sys.path.insert(0, str(root))
    try:
        from mypkg.nets import Generator

        torch.save(Generator().state_dict(), root / "my_g.pth")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("mypkg.nets", None)
        sys.modules.pop("mypkg", None)
    (root / "recipes").symlink_to(REPO / "recipes")
    return {"root": root, "done": set()}


def _run(block: Block, root: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(root)]),
        "GAN_BREVITAS_REPO": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    command = ["bash", "-e", "-o", "pipefail", "-c", block.code] if block.language == "bash" else [
        sys.executable, "-c", block.code]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


def test_the_readme_has_blocks_and_every_mark_names_its_short_variant() -> None:
    text = README.read_text()
    assert len(BLOCKS) >= 10
    assert text.count("<!-- readme-test:") == sum(bool(b.why) for b in BLOCKS)  # no mark lost or misplaced


def test_the_first_screen_says_what_how_and_shows_a_picture() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:45])
    for part in ("## Install", "pip install", "## The main job", "gan-brevitas demo", "## Tests",
                 "python -m pytest", "![", "quantizes"):
        assert part in first_screen, part
    picture = re.search(r"!\[[^\]]*\]\(([^)]+)\)", first_screen).group(1)
    assert (REPO / picture).is_file()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, workspace: dict) -> None:
    for earlier in BLOCKS[: block.index + 1]:  # blocks build on the files earlier ones wrote
        if earlier.index in workspace["done"]:
            continue
        done = _run(earlier, workspace["root"])
        assert done.returncode == 0, (
            f"README block {earlier.id} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n"
            f"--- stderr\n{done.stderr[-3000:]}"
        )
        assert "Traceback" not in done.stderr
        workspace["done"].add(earlier.index)
