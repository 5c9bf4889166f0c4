"""Reading images from disk: the one implementation both tasks use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def read_image(path: Path) -> torch.Tensor:
    """RGB ``[3,H,W]`` float in [0,1]; a corrupt or missing file raises naming it."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0
