"""Shared pieces of the reproduce tests: the repository's recipes, one thread, a recipe editor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Single-threaded: the tests share two cores with other work."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def edited(tmp_path):
    """``edited(recipe, old, new)``: a copy of a repository recipe with one text replaced,
    written under a folder named like the original's (so its id stays table/stem)."""

    def make(recipe: str, old: str = "", new: str = "") -> Path:
        source = RECIPES / recipe
        text = source.read_text()
        if old:
            assert old in text, f"{old!r} not in {recipe}"
            text = text.replace(old, new, 1)
        target = tmp_path / "recipes" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    return make
