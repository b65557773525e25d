"""Train the offline FID feature extractor (the demo CNN) on the demo data.

    python -m tools.train_extractor            # writes the packaged weights

Classes: the 10 MNIST digits, then one class per scikit-image source of
``gan_brevitas.demo.data.TEXTURE_SOURCES`` (grass, gravel, brick, coffee, chelsea, astronaut).
Everything is seeded; the weights (safetensors, class names in its metadata) and a JSON note
(command, seed, accuracy, time, sha256) are written atomically next to each other.

Held-out data: MNIST digits are a real held-out split (10 %, stratified). Texture/photo
held-out images are fresh random crops (another seed) of the same source pictures: there is
only one picture per class, so they can overlap training crops.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.demo.data import TEXTURE_SOURCES, mnist_digits, texture_crops
from gan_brevitas.errors import ConfigError
from gan_brevitas.harness import machine_description
from gan_brevitas.metrics.extractors import (
    DEMO_CNN_INPUT_SIZE,
    DEMO_CNN_WEIGHTS,
    TRAIN_COMMAND,
    DemoCNN,
    weights_sha256,
)

__all__ = ["CLASS_NAMES", "TrainConfig", "build_dataset", "evaluate", "main", "train"]

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = tuple(f"digit-{d}" for d in range(10)) + TEXTURE_SOURCES
_HELDOUT_FRACTION = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the extractor training (defaults produced the committed weights)."""

    seed: int = 0
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    crops_per_source: int = 800  # training crops per texture/photo class (MNIST has 450 per digit)
    heldout_crops_per_source: int = 200
    max_shift: int = 2  # random translation augmentation, pixels

    def __post_init__(self) -> None:
        for field_name in ("epochs", "batch_size", "crops_per_source", "heldout_crops_per_source"):
            if getattr(self, field_name) <= 0:
                raise ConfigError(f"TrainConfig.{field_name} must be > 0, got {getattr(self, field_name)}.")
        if self.lr <= 0 or self.max_shift < 0:
            raise ConfigError(
                f"TrainConfig needs lr > 0 and max_shift >= 0, got lr={self.lr}, max_shift={self.max_shift}."
            )


def build_dataset(split: str, seed: int = 0, crops_per_source: int = 800) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, 32, 32] in [-1, 1] and labels (indices into CLASS_NAMES) of one split.

    Args:
        split: "train" or "heldout".
        seed: fixes the MNIST split and the texture crops; the held-out crops use other seeds.
        crops_per_source: number of crops per texture/photo class in this split.
    """
    if split not in ("train", "heldout"):
        raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}.")
    digits, digit_labels = mnist_digits(size=DEMO_CNN_INPUT_SIZE)
    generator = torch.Generator().manual_seed(seed)
    heldout_index, train_index = [], []
    for digit in range(10):  # stratified split: the same fraction of every digit is held out
        members = torch.nonzero(digit_labels == digit).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = round(len(members) * _HELDOUT_FRACTION)
        heldout_index.append(members[:cut])
        train_index.append(members[cut:])
    index = torch.cat(heldout_index if split == "heldout" else train_index)
    images, labels = [digits[index]], [digit_labels[index]]

    split_offset = 0 if split == "train" else 1000  # held-out crops come from different seeds
    for offset, name in enumerate(TEXTURE_SOURCES):
        crop_seed = seed * 10_000 + split_offset + offset
        crops = texture_crops(name, crops_per_source, size=DEMO_CNN_INPUT_SIZE, seed=crop_seed)
        images.append(crops)
        labels.append(torch.full((crops_per_source,), CLASS_NAMES.index(name), dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def _random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (replicate padding keeps textures seamless)."""
    if max_shift == 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(offsets)])


@torch.no_grad()
def evaluate(model: DemoCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of model (put in eval mode) on images [N, 3, 32, 32] in [-1, 1]."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def train(config: TrainConfig) -> tuple[DemoCNN, dict[str, float]]:
    """Train the demo CNN; returns it (eval mode) and its held-out accuracies."""
    torch.manual_seed(config.seed)  # parameter initialisation
    generator = torch.Generator().manual_seed(config.seed)
    train_images, train_labels = build_dataset("train", config.seed, config.crops_per_source)
    heldout_images, heldout_labels = build_dataset("heldout", config.seed, config.heldout_crops_per_source)
    logger.info(
        "Training on %d images, %d held out, %d classes", len(train_images), len(heldout_images), len(CLASS_NAMES)
    )

    model = DemoCNN(num_classes=len(CLASS_NAMES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_images) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        total_loss, total_correct = 0.0, 0
        starts = range(0, len(order), config.batch_size)
        for start in tqdm(starts, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False):
            batch = order[start : start + config.batch_size]
            images = _random_shift(train_images[batch], config.max_shift, generator)
            logits = model(images)
            loss = F.cross_entropy(logits, train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(batch)
            total_correct += int((logits.argmax(dim=1) == train_labels[batch]).sum())
        accuracy = evaluate(model, heldout_images, heldout_labels)
        logger.info(
            "epoch %d/%d  train loss %.4f  train acc %.4f  held-out acc %.4f",
            epoch + 1, config.epochs, total_loss / len(order), total_correct / len(order), accuracy,
        )  # fmt: skip

    is_digit = heldout_labels < 10
    accuracies = {
        "heldout": evaluate(model, heldout_images, heldout_labels),
        "heldout_digits": evaluate(model, heldout_images[is_digit], heldout_labels[is_digit]),
        "heldout_textures": evaluate(model, heldout_images[~is_digit], heldout_labels[~is_digit]),
    }
    return model, accuracies


def save_weights(model: DemoCNN, path: Path, note: dict[str, object]) -> None:
    """Save the weights (safetensors + class names metadata) and a JSON note beside them, atomically."""
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {"class_names": ",".join(CLASS_NAMES), "input_size": str(DEMO_CNN_INPUT_SIZE), "range": "[-1, 1]"}
    atomic_write(path, lambda temporary: save_file(state, temporary, metadata=metadata))
    note = {**note, "weights_sha256": weights_sha256(path, short=False), "weights_bytes": path.stat().st_size}
    note_path = path.with_suffix(".json")
    atomic_write(note_path, lambda temporary: Path(temporary).write_text(json.dumps(note, indent=2) + "\n"))
    logger.info("Wrote %s (%d bytes) and %s", path, path.stat().st_size, note_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = TrainConfig()
    parser.add_argument("--out", type=Path, default=DEMO_CNN_WEIGHTS, help="weights file (.safetensors)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--crops-per-source", type=int, default=defaults.crops_per_source)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    config = TrainConfig(
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        crops_per_source=args.crops_per_source,
    )
    started = time.perf_counter()
    model, accuracies = train(config)
    seconds = time.perf_counter() - started
    logger.info("Trained in %.1f s; held-out accuracy %s", seconds, {k: round(v, 4) for k, v in accuracies.items()})
    note: dict[str, object] = {
        "command": " ".join([TRAIN_COMMAND, *(argv if argv is not None else sys.argv[1:])]),
        "config": asdict(config),
        "class_names": list(CLASS_NAMES),
        "accuracy": accuracies,
        "train_seconds": round(seconds, 1),
        "machine": machine_description(),
    }
    save_weights(model, args.out, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
