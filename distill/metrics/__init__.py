"""Open-vocabulary metrics (torchmetrics, DDP-synced): segmentation mIoU and detection AP, split seen/unseen."""
from .detection import OpenVocabDetectionAP
from .lvis import LVISDetectionAP
from .segmentation import OpenVocabMeanIoU

__all__ = ["LVISDetectionAP", "OpenVocabDetectionAP", "OpenVocabMeanIoU"]
