"""Developer tools run from a checkout of the repository, not shipped in the wheel: the
trainers of the packaged demo generators (`train_demo`) and of the demo feature extractor
(`train_extractor`). Run them as ``python -m tools.train_demo ...`` from the repository root."""
