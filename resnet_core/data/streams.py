"""The seed of a member's data stream in an epoch: its data order and augmentation draws, the same for the fast
device loader and the seeds' PIL DataLoader."""
from __future__ import annotations

import numpy as np

_DATA_STREAM = 0x0DA7A  # mixed into every data-order seed, so it never equals a model-init stream of the same seed


def stream_seed(seed: int, epoch: int) -> int:
    """The CPU generator seed of (member seed, epoch): well mixed, so nearby seeds and epochs are unrelated."""
    state = np.random.SeedSequence([seed % 2**63, epoch, _DATA_STREAM]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])
