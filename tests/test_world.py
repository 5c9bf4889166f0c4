"""The synthetic world generator: determinism, COCO validity, the base/novel split, safe writing."""
from __future__ import annotations

import filecmp
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pipelines.cli import main as cli_main
from pipelines.world import SceneConfig, WorldExistsError, WorldSpec, load_spec, write_world
from pipelines.world.spec import MANIFEST, instances_path, label_path


def _spec(seed=3):
    return WorldSpec(seed=seed, splits={"train": 10, "val": 6, "test": 4}, scene=SceneConfig(image_size=64, min_radius=6, max_radius=16))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(_spec(), tmp_path_factory.mktemp("w") / "world", progress=False)


def _all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_gives_byte_identical_world(world, tmp_path):
    again = write_world(_spec(), tmp_path / "again", progress=False)
    files = _all_files(world)
    assert files == _all_files(again) and len(files) > 40
    match, mismatch, errors = filecmp.cmpfiles(world, again, files, shallow=False)
    assert mismatch == [] and errors == []
    other = write_world(_spec(seed=4), tmp_path / "other", progress=False)
    assert not filecmp.cmp(world / "images/val/000000.png", other / "images/val/000000.png", shallow=False)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_coco_json_loads_and_masks_decode_to_label_pngs(world, split):
    coco = COCO(str(world / instances_path(split)))
    spec = load_spec(world)
    novel_ids = {c["id"] for c in coco.loadCats(coco.getCatIds()) if c["name"] in spec.novel}
    for img in coco.loadImgs(coco.getImgIds()):
        label = np.asarray(Image.open(world / label_path(split, img["id"] - 1)))
        assert label.shape == (img["height"], img["width"])
        assert Image.open(world / img["file_name"]).size == (img["width"], img["height"])
        rebuilt = np.zeros_like(label)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            m = coco.annToMask(ann).astype(bool)
            assert m.sum() == ann["area"] > 0
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(m)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
            assert not (rebuilt[m] != 0).any(), "instance masks overlap"
            rebuilt[m] = ann["category_id"]
        if split == "train":
            # the semantic map agrees everywhere except at (hidden) novel pixels, which are 255
            np.testing.assert_array_equal(np.where(label == 255, 0, label), rebuilt)
        else:
            np.testing.assert_array_equal(label, rebuilt)
            assert not (label == 255).any()
    if split != "train":
        assert any(a["category_id"] in novel_ids for a in coco.dataset["annotations"])


def test_novel_classes_absent_from_every_training_annotation(world):
    spec = load_spec(world)
    data = json.loads((world / instances_path("train")).read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert data["annotations"], "training split has annotations"
    assert {names[a["category_id"]] for a in data["annotations"]}.isdisjoint(spec.novel)
    labels = np.stack([np.asarray(Image.open(world / label_path("train", i))) for i in range(10)])
    novel_ids = [i + 1 for i, c in enumerate(spec.classes) if c in spec.novel]
    assert not np.isin(labels, novel_ids).any()
    assert (labels == 255).any(), "novel objects are present in training images, as ignore pixels"
    captions = json.loads((world / "annotations/captions_train.json").read_text())["annotations"]
    assert any(n in c["caption"] for c in captions for n in spec.novel), "captions still mention novel classes"


def test_refuses_foreign_or_different_directory_and_reuses_same(world, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(WorldExistsError, match="not a synthetic world.*--overwrite"):
        write_world(_spec(), foreign, progress=False)
    assert (foreign / "thesis.tex").read_text() == "precious"
    with pytest.raises(WorldExistsError, match="different world"):
        write_world(_spec(seed=9), world, progress=False)
    stamp = (world / MANIFEST).stat().st_mtime_ns
    assert write_world(_spec(), world, progress=False) == world
    assert (world / MANIFEST).stat().st_mtime_ns == stamp


def test_interrupted_generation_is_never_read_as_complete(tmp_path, monkeypatch):
    import pipelines.world.generate as gen

    out = tmp_path / "w"
    calls = {"n": 0}
    real = gen._split_records

    def crash_on_second_split(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "_split_records", crash_on_second_split)
    with pytest.raises(KeyboardInterrupt):
        write_world(_spec(), out, progress=False)
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match="not a complete synthetic world"):
        load_spec(out)
    monkeypatch.setattr(gen, "_split_records", real)
    write_world(_spec(), out, progress=False)
    assert load_spec(out).fingerprint() == _spec().fingerprint()
    assert not (tmp_path / ".w.partial").exists()


def test_world_command_and_bad_split(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["world", "--out", str(out), "--train", "3", "--val", "2", "--test", "1", "--image-size", "64"]) == 0
    assert (out / MANIFEST).is_file()
    assert cli_main(["world", "--out", str(out), "--train", "4"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["world", "--out", str(tmp_path / "x"), "--novel", "dragon"]) == 2
    assert "dragon" in capsys.readouterr().err


def test_rle_is_valid_pycocotools(world):
    ann = json.loads((world / instances_path("val")).read_text())["annotations"][0]
    rle = {**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}
    assert mask_utils.area(rle) == ann["area"]


def test_world_command_defaults_render_the_demos_world():
    """``ovdistill world --out data/world`` then ``ovdistill fit`` must score the demo's test images, not another set."""
    import argparse

    from pipelines.bench.mission import demo_spec
    from pipelines.commands.world import spec_arguments, spec_from_args

    parser = argparse.ArgumentParser()
    spec_arguments(parser)
    spec = spec_from_args(parser.parse_args([]))
    assert spec.splits == demo_spec(quick=False, seed=0).splits
    assert spec.fingerprint() == demo_spec(quick=False, seed=0).fingerprint()
