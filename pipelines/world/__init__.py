"""The synthetic open-vocabulary world: procedural shape scenes, captions, COCO annotations, splits."""
from .generate import WorldExistsError, load_spec, write_world
from .scene import COLOURS, SceneConfig
from .shapes import SHAPES
from .spec import DEFAULT_NOVEL, WORLD_VERSION, WorldSpec

__all__ = [
    "COLOURS",
    "DEFAULT_NOVEL",
    "SHAPES",
    "SceneConfig",
    "WORLD_VERSION",
    "WorldExistsError",
    "WorldSpec",
    "load_spec",
    "write_world",
]
