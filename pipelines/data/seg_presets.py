"""Class names and the standard zero-shot splits of the usual semantic segmentation benchmarks.

Label ids follow the datasets' usual mmsegmentation preparation (VOC ``SegmentationClass(Aug)`` with 0 =
background and 255 borders; PASCAL Context label maps with 0 = background; COCO-Stuff 164k's 0..170;
ADE20K with 0 = "other"). Each preset says which paper's protocol it follows.
"""
from __future__ import annotations

from dataclasses import dataclass

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_UNSEEN = ("pottedplant", "sheep", "sofa", "train", "tvmonitor")

CONTEXT59_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building",
    "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog",
    "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike",
    "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall",
    "water", "window", "wood",
)
CONTEXT59_UNSEEN = ("cow", "motorbike", "sofa", "cat", "boat", "fence", "bird", "tvmonitor", "keyboard", "aeroplane")

COCO_STUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other",
    "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes",
    "clouds", "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal",
    "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
    "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)
COCO_STUFF_UNSEEN = (
    "cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "cardboard", "clouds", "grass",
    "playingfield", "river", "road", "tree", "wall-concrete",
)

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)



@dataclass(frozen=True)
class SegPreset:
    names: tuple[str, ...]
    unseen: tuple[str, ...]
    reduce_zero_label: bool
    protocol: str


SEG_PRESETS: dict[str, SegPreset] = {
    "voc20": SegPreset(
        VOC_CLASSES, VOC_UNSEEN, True,
        "PASCAL VOC 2012, 20 classes, background ignored, 15 seen / 5 unseen (SPNet; ZegCLIP, MaskCLIP+ VOC)",
    ),
    "context59": SegPreset(
        CONTEXT59_CLASSES, CONTEXT59_UNSEEN, True,
        "PASCAL Context 59 classes, background ignored, 49 seen / 10 unseen (ZegCLIP-style)",
    ),
    "context60": SegPreset(
        ("background", *CONTEXT59_CLASSES), CONTEXT59_UNSEEN, False,
        "PASCAL Context 60 classes with background as a class, 50 seen / 10 unseen (ZS3Net, MaskCLIP+)",
    ),
    "coco_stuff171": SegPreset(
        COCO_STUFF_CLASSES, COCO_STUFF_UNSEEN, False, "COCO-Stuff 171 classes, 156 seen / 15 unseen (SPNet, ZegCLIP, MaskCLIP+)",
    ),
    "ade20k150": SegPreset(ADE20K_CLASSES, (), True, "ADE20K 150 classes, all evaluated (cross-dataset open-vocabulary)"),
}

#: earlier names: same meaning -> alias; changed meaning -> refused with the new spelling
PRESET_ALIASES = {"coco_stuff": "coco_stuff171", "ade20k": "ade20k150"}
RENAMED_PRESETS = {
    "voc": "preset 'voc' (21 classes with background, 16/5) was not the literature's split; use 'voc20' (20 classes, "
    "background ignored, 15 seen / 5 unseen, SPNet/ZegCLIP/MaskCLIP+) or give class_names + unseen for another protocol",
}


def get_preset(name: str) -> SegPreset:
    if name in RENAMED_PRESETS:
        raise ValueError(RENAMED_PRESETS[name])
    name = PRESET_ALIASES.get(name, name)
    if name not in SEG_PRESETS:
        raise ValueError(f"unknown segmentation preset {name!r}; known: {sorted(SEG_PRESETS)}")
    return SEG_PRESETS[name]
