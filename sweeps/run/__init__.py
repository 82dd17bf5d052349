"""Running trials: worker processes that claim and train them (``worker``) and one trial's objective (``objective``:
trial → run config → ``resnet_core.engine.train`` → verdict). Imports ``queue`` and ``spec``."""
