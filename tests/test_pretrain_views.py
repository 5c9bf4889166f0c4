"""Cropped views in the teacher's caption data: what a view shows is what its caption says, and nothing else."""
from __future__ import annotations

import numpy as np
import torch

from pipelines.world import SHAPES
from pipelines.world.generate import scene_rng
from pipelines.world.pretrain_data import CaptionedScenes
from pipelines.world.pretrain_views import crop_view, view_window
from pipelines.world.scene import SceneConfig, sample_scene


def _named(text: str) -> list[str]:
    return [s for s in SHAPES if s in text]


def _scene(index: int, n: int):
    return sample_scene(scene_rng(5, "views-test", index), SceneConfig(96, 1, 4), SHAPES, n_objects=n)


def test_object_windows_name_the_framed_object_from_tight_to_context():
    scales, fill = [], []
    for i in range(40):
        scene = _scene(i, 1)
        inst = scene.instances[0]
        ys, xs = np.nonzero(inst.mask)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)
        window = view_window(scene, scene_rng(5, "views-window", i), (0.9, 2.0), 0.0)
        centre = (box[:2] + box[2:]) / 2
        assert (window[:2] <= centre).all() and (centre <= window[2:]).all(), (window, box)
        unclipped = window[0] > 0 and window[1] > 0 and window[2] < 96 and window[3] < 96
        if unclipped:
            scales.append((window[2] - window[0]) / (box[2] - box[0]))
        view, text = crop_view(scene, scene_rng(5, "views-window", i), 64, p_background=0.0)
        assert _named(text) == [inst.shape], text
        # the view shows the object: pixels close to the object's mean colour fill a share that shrinks with context
        colour = scene.pixels[inst.mask].mean(0) / 255
        share = float(((view - torch.tensor(colour).view(3, 1, 1)).abs().max(0).values < 0.12).float().mean())
        if unclipped:
            fill.append((scales[-1], share))
    assert min(scales) < 1.1 and max(scales) > 1.8, scales
    tight = [s for k, s in fill if k < 1.2]
    loose = [s for k, s in fill if k > 1.7]
    assert tight and loose and np.mean(tight) > np.mean(loose) + 0.15, fill


def test_background_windows_show_no_object_and_say_background():
    backgrounds = 0
    for i in range(60):
        scene = _scene(i, 2)
        rng = scene_rng(5, "views-window", i)
        _, text = crop_view(scene, rng, 64, p_background=1.0)
        x1, y1, x2, y2 = view_window(scene, scene_rng(5, "views-window", i), (0.9, 2.0), 1.0)  # the same draw
        x1, y1, x2, y2 = int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))
        covered = sum(int(inst.mask[y1:y2, x1:x2].sum()) for inst in scene.instances) / ((x2 - x1) * (y2 - y1))
        if not _named(text):
            backgrounds += 1
            assert "background" in text and covered < 0.03, (text, covered)
        else:  # a window that shows a visible piece of an object names it
            assert "background" not in text or " on a " in text
    assert backgrounds >= 10


def test_crop_groups_share_the_window_and_differ_only_in_shape_words():
    ds = CaptionedScenes(length=400, image_size=64, seed=3, group_size=4, p_crop=1.0)
    differing = alike = 0
    for index in range(40):
        images, captions = ds[index]
        assert images.shape == (4, 3, 64, 64) and images.min() >= 0 and images.max() <= 1
        stripped = {c for c in captions}
        for s in SHAPES:
            stripped = {c.replace(s, "X") for c in stripped}
        # same frame, colours and background words across the group: only shape words differ (unless a shape
        # did not fit where another did, which changes the scene's object count, as in whole-scene groups)
        alike += len(stripped) == 1
        differing += len(set(captions)) > 1
    assert alike >= 24 and differing >= 30, (alike, differing)
    # p_crop = 0 keeps the whole-scene stream unchanged
    a = CaptionedScenes(length=16, image_size=48, seed=1, group_size=4)[0]
    b = CaptionedScenes(length=16, image_size=48, seed=1, group_size=4, p_crop=0.0)[0]
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
