"""Random number generator state in checkpoints.

Lightning checkpoints hold weights, optimizer, schedulers and loop progress, but not the Python, NumPy
and torch generators. Without them a resumed run would shuffle and augment differently from an
uninterrupted one with the same seed. As a callback, the state rides in ``last.ckpt`` and is put back
when Lightning restores callbacks, before the next epoch draws its first random number.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RNGStateCheckpoint(Callback):
    """Under DDP the saved state is rank 0's: every rank is seeded alike and draws alike."""

    def state_dict(self) -> dict:
        # NumPy's key array as a tensor: checkpoints stay loadable with torch.load(weights_only=True).
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
        state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        random.setstate(state_dict["python"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
