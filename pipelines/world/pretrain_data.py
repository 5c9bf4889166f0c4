"""Image-caption pairs for contrastive pre-training of the embedded teacher, generated on the fly.

Scenes come from the same generator as the world but from their own seed stream (split ``pretrain``),
so the teacher never sees the world's evaluation images. Captions name every object, base and novel:
the teacher learns the novel classes from language. A share of the scenes holds a single large object,
which looks like a region crop and teaches shape words fastest.

Each item is a *group* of ``group_size`` renderings of one scene that differ only in which shapes
are drawn (same background, colours, sizes, positions). In a contrastive batch the captions of a group
then differ only in their shape words, so the loss cannot be lowered by matching colours or
backgrounds: it is the recipe change that lifts zero-shot shape accuracy from chance to the bar.

A share ``p_crop`` of the groups are cropped views of world-sized scenes (:mod:`.pretrain_views`): objects
framed tightly, with context, cut by the border, or no object at all. The window is drawn from its own
stream, so the variants of a group are cropped alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from .generate import scene_rng
from .pretrain_views import crop_view
from .scene import SceneConfig, caption, sample_scene
from .shapes import SHAPES


@dataclass
class CaptionedScenes(Dataset):
    """``length`` deterministic (image ``[3,S,S]`` float in [0,1], caption) pairs, in groups of ``group_size``."""

    length: int = 20000
    image_size: int = 64
    seed: int = 0
    classes: tuple[str, ...] = SHAPES
    single_fraction: float = 0.5
    max_objects: int = 3
    p_colour: float = 0.2
    p_size: float = 0.2
    group_size: int = 4
    p_background: float = 0.3
    p_crop: float = 0.0
    crop_objects: tuple[int, int] = (1, 4)

    def __post_init__(self):
        self.classes = tuple(self.classes)
        scale = self.image_size / 96
        self.multi = SceneConfig(self.image_size, 1, self.max_objects, 9.0 * scale, 24.0 * scale)
        self.single = SceneConfig(self.image_size, 1, 1, 14.0 * scale, 46.0 * scale)
        self.world = SceneConfig(96, *self.crop_objects)  # the world's own image and object sizes

    def __len__(self) -> int:
        return self.length // self.group_size

    def __getitem__(self, index: int):
        crop = scene_rng(self.seed, "pretrain-view", index).random() < self.p_crop
        images, captions = [], []
        for variant in range(self.group_size):
            if crop:
                rng = scene_rng(self.seed, "pretrain-crop", index)
                scene = sample_scene(rng, self.world, self.classes, shape_offset=variant)
                view, text = crop_view(scene, scene_rng(self.seed, "pretrain-window", index), self.image_size,
                                       p_colour=self.p_colour, p_background_word=self.p_background)
                images.append(view)
                captions.append(text)
                continue
            rng = scene_rng(self.seed, "pretrain", index)
            single = rng.random() < self.single_fraction
            cfg = self.single if single else self.multi
            scene = sample_scene(rng, cfg, self.classes, shape_offset=variant)
            images.append(torch.from_numpy(scene.pixels).permute(2, 0, 1).float() / 255.0)
            captions.append(caption(scene, rng, self.p_colour, self.p_size, self.p_background))
        return torch.stack(images), captions


def collate_captions(batch):
    """Flatten groups into one batch of images ``[N,3,S,S]`` and N captions."""
    images, captions = zip(*batch, strict=True)
    return torch.cat(images), [c for group in captions for c in group]

