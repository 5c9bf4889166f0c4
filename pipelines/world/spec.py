"""What a synthetic world is: classes, base/novel split, split sizes, seed, and its on-disk layout."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .scene import SceneConfig
from .shapes import SHAPES

#: Bumped whenever the generator's output for a given spec changes (the shipped teacher records it).
WORLD_VERSION = 1
DEFAULT_NOVEL: tuple[str, ...] = ("star", "heart", "ring")
#: The demo's split sizes, also ``ovdistill world``'s defaults: the two commands render the same world.
DEFAULT_SPLITS: dict[str, int] = {"train": 1200, "val": 200, "test": 300}


@dataclass
class WorldSpec:
    seed: int = 0
    classes: tuple[str, ...] = SHAPES
    novel: tuple[str, ...] = DEFAULT_NOVEL
    splits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SPLITS))
    scene: SceneConfig = field(default_factory=SceneConfig)

    def __post_init__(self):
        self.classes, self.novel = tuple(self.classes), tuple(self.novel)
        if isinstance(self.scene, dict):
            self.scene = SceneConfig(**self.scene)
        for what, names in (("classes", self.classes), ("novel", self.novel)):
            dup = sorted({c for c in names if names.count(c) > 1})
            if dup:
                raise ValueError(f"--{what} names {dup} more than once")
        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown:
            raise ValueError(f"world classes {unknown} are not shapes the generator can draw ({SHAPES})")
        missing = [c for c in self.novel if c not in self.classes]
        if missing:
            raise ValueError(f"novel classes {missing} are not in the class list {self.classes}")
        if not self.novel or len(self.novel) >= len(self.classes):
            raise ValueError(f"need at least one novel and one base class, got novel={self.novel}")
        for name, n in self.splits.items():
            if n < 0:
                raise ValueError(f"split {name!r} has negative size {n}")

    @property
    def base(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if c not in self.novel)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["version"] = WORLD_VERSION
        return d

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict) -> WorldSpec:
        d = {k: v for k, v in d.items() if k != "version"}
        return cls(**d)


# On-disk layout of a world directory (all paths relative to it).
MANIFEST = "world.json"  # written last: its presence means the world is complete
SPLIT_FILE = "split.json"


def image_path(split: str, index: int) -> str:
    return f"images/{split}/{index:06d}.png"


def label_path(split: str, index: int) -> str:
    return f"labels/{split}/{index:06d}.png"


def instances_path(split: str) -> str:
    return f"annotations/instances_{split}.json"


def captions_path(split: str) -> str:
    return f"annotations/captions_{split}.json"
