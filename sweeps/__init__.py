"""sweeps: ablation grids (YAML) → Optuna studies → one `resnet_core.train` per (cell, seed)."""
