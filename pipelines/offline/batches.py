"""The one in-process batching loop of the offline steps (``Trainer.predict`` does it for the commands)."""
from __future__ import annotations


def batches(dataset, batch_size: int, progress=None):
    """``(images, targets)`` lists of consecutive dataset items."""
    order = range(0, len(dataset), batch_size)
    for start in progress(order) if progress else order:
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        yield [img for img, _ in items], [t for _, t in items]
