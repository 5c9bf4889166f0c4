"""Open-vocabulary metrics (torchmetrics, DDP-synced): segmentation mIoU with seen/unseen/hIoU."""
from .segmentation import OpenVocabMeanIoU

__all__ = ["OpenVocabMeanIoU"]
