"""The data layer on files in the real layouts (see ``real_formats``): label semantics per preset, held-out
labels hidden in training only, COCO quirks, LVIS images from ``coco_url``, relative-path errors."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from real_formats import COCO_IDS, write_coco, write_coco_stuff, write_context, write_lvis, write_voc

from pipelines.data.det_datamodule import CocoDetDataModule
from pipelines.data.seg_datamodule import SegFolderDataModule
from pipelines.data.seg_presets import VOC_CLASSES

VOC_SPLITS = {"train": ["JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation/train_aug.txt"],
              "val": ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation/val.txt"]}


def test_voc20_reads_palette_labels_ignores_background_and_hides_unseen_in_training(tmp_path):
    voc = write_voc(tmp_path)
    dm = SegFolderDataModule(str(voc), preset="voc20", splits=VOC_SPLITS)
    for split in ("train", "val"):
        ds = dm.dataset(split)
        item = ds[0]
        raw = np.asarray(Image.open(ds.labels[0])).astype(np.int64)  # VOC ids: 0 background .. 20, 255 border
        want = np.where((raw == 0) | (raw == 255), 255, raw - 1)    # 20 classes, background ignored
        sheep = VOC_CLASSES.index("sheep")
        assert (want == sheep).any(), "the file holds an unseen class"
        if split == "train":
            want = np.where(want == sheep, 255, want)
        assert torch.equal(item["label"], torch.from_numpy(want)), split
        assert item["image"].shape == (3, 72, 88)
    assert len(dm.dataset("train")) == 2 and len(dm.dataset("val")) == 2


def test_context59_and_context60_read_the_same_files_differently(tmp_path):
    ctx = write_context(tmp_path)
    splits = {"train": ["JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/train.txt"],
              "val": ["JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/val.txt"]}
    c59 = SegFolderDataModule(str(ctx), preset="context59", splits=splits).dataset("val")
    c60 = SegFolderDataModule(str(ctx), preset="context60", splits=splits).dataset("val")
    raw = torch.from_numpy(np.asarray(Image.open(c59.labels[0])).astype(np.int64))
    assert (raw == 0).any()
    assert torch.equal(c60[0]["label"], raw)                                           # 0 = background, a class
    assert torch.equal(c59[0]["label"], torch.where(raw == 0, 255, raw - 1))          # background ignored


def test_coco_stuff_labels_pair_by_suffix(tmp_path):
    cs = write_coco_stuff(tmp_path)
    splits = {"train": ["images/train2017", "annotations/train2017"], "val": ["images/val2017", "annotations/val2017"]}
    dm = SegFolderDataModule(str(cs), preset="coco_stuff171", splits=splits, label_suffix="_labelTrainIds.png")
    train = dm.dataset("train")
    assert [p.name for p in train.labels] == ["000000000000_labelTrainIds.png", "000000000001_labelTrainIds.png"]
    cow, grass = dm.class_names.index("cow"), dm.class_names.index("grass")
    lab = train[0]["label"]
    assert not ((lab == cow) | (lab == grass)).any()                   # unseen hidden in training
    assert ((dm.dataset("val")[0]["label"] == cow).any())              # kept for evaluation
    with pytest.raises(FileNotFoundError, match="label files missing"):
        SegFolderDataModule(str(cs), preset="coco_stuff171", splits=splits).dataset("train")  # default ".png" suffix


def test_missing_split_list_names_the_folder_and_the_lists_there(tmp_path):
    voc = write_voc(tmp_path)
    dm = SegFolderDataModule(str(voc), preset="voc20", splits={"train": ["JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation/aug.txt"]})
    with pytest.raises(FileNotFoundError, match=r"aug.txt .*list files there: \['train.txt', 'train_aug.txt', 'val.txt'\]"):
        dm.dataset("train")


def test_coco_real_layout_drops_degenerate_boxes_and_novel_training_boxes(tmp_path, caplog):
    coco = write_coco(tmp_path)
    dm = CocoDetDataModule(str(coco), "annotations/instances_train2017.json", "annotations/instances_val2017.json",
                           train_images="train2017", val_images="val2017", split="ov_coco")
    assert len(dm.class_names) == 65 and len(dm.novel) == 17
    with caplog.at_level(logging.WARNING):
        train = dm.dataset("train")
    assert "dropped 1 annotations with zero-width or zero-height boxes" in caplog.text
    cat = dm.class_names.index("cat")
    for i in range(len(train)):
        image, target = train[i]
        assert image.shape == (3, 72, 96)           # grayscale and EXIF-tagged JPEGs read as stored (3 channels)
        assert cat not in target["labels"].tolist()  # novel boxes never reach training
        assert (target["iscrowd"] == 0).all()
    val = dm.dataset("val")
    assert any(cat in val[i][1]["labels"].tolist() for i in range(len(val)))
    assert any(val[i][1]["iscrowd"].any() for i in range(len(val)))  # crowd regions kept for evaluation
    strict = CocoDetDataModule(str(coco), "annotations/instances_train2017.json", "annotations/instances_val2017.json",
                               train_images="train2017", val_images="val2017", split="ov_coco", degenerate="error")
    with pytest.raises(ValueError, match=r"zero width or height, first: annotation \d+ \(image 1\) with width 12.0 and height 0.0"):
        strict.dataset("train")
    assert COCO_IDS[dm.class_names.index("person")] == 1


def test_coco_images_in_the_wrong_folder_say_where_they_were_looked_for(tmp_path):
    coco = write_coco(tmp_path)
    dm = CocoDetDataModule(str(coco), "annotations/instances_train2017.json", "annotations/instances_val2017.json", split="ov_coco")
    with pytest.raises(FileNotFoundError, match=r"000000000001.jpg .*set the data module's \*_images"):
        dm.dataset("train")[0]
    with pytest.raises(FileNotFoundError, match=r"proposals file .*nope.pt does not exist \('nope.pt' was resolved against"):
        CocoDetDataModule(str(coco), "annotations/instances_train2017.json", "annotations/instances_val2017.json",
                          split="ov_coco", proposals="nope.pt").dataset("train")


def test_lvis_images_come_from_coco_url(tmp_path):
    write_lvis(tmp_path)
    dm = CocoDetDataModule(str(tmp_path), "lvis/lvis_v1_train.json", "lvis/lvis_v1_val.json", train_images="coco",
                           val_images="coco", split="lvis")
    assert dm.novel == ["cat", "aerosol_can"]
    val = dm.dataset("val")
    assert {val.coco.imgs[i]["coco_url"].split("/")[-2] for i in val.ids} == {"train2017", "val2017"}
    image, target = val[len(val) - 1]
    assert image.shape == (3, 72, 96) and len(target["boxes"]) == 2
