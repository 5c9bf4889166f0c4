"""The dense-pooled region teacher: RoIAlign means of one dense map per image, selectable in every method and
in the proposals file, and a teacher that localises classifies world objects with it."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RN, make_teacher
from test_det_parts import tiny_detector

from distill.det_modules import ViLD, check_region_teacher
from pipelines.data.det_datamodule import WorldDetDataModule
from pipelines.data.proposals_file import load_proposals, save_proposals
from pipelines.offline.proposals import compute_proposals
from teachers.region_pool import pool_regions


def test_pooled_region_is_the_mean_of_the_cells_under_the_box():
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(2, 6, 8, 8, generator=g), dim=1)
    boxes = [torch.tensor([[16.0, 8.0, 48.0, 40.0]]), torch.tensor([[0.0, 0.0, 64.0, 32.0], [8.0, 24.0, 40.0, 56.0]])]
    got = pool_regions(feats, (64, 64), boxes, scales=(1.0,))
    want = torch.stack([feats[0, :, 1:5, 2:6].mean((1, 2)), feats[1, :, 0:4, :].mean((1, 2)), feats[1, :, 3:7, 1:5].mean((1, 2))])
    torch.testing.assert_close(got, F.normalize(want, dim=-1), atol=1e-5, rtol=0)
    # 2x context around a centred 32 px box = the whole image; scales average after normalising
    centred = [torch.tensor([[16.0, 16.0, 48.0, 48.0]])]
    two = pool_regions(feats[:1], (64, 64), centred, scales=(1.0, 2.0))
    tight = F.normalize(feats[0, :, 2:6, 2:6].mean((1, 2)), dim=0)
    whole = F.normalize(feats[0].mean((1, 2)), dim=0)
    torch.testing.assert_close(two[0], F.normalize(tight + whole, dim=0), atol=1e-5, rtol=0)


def test_the_embedded_teacher_classifies_world_objects_from_its_dense_map():
    """Tight boxes pooled from the dense map: far above chance (12.5%); with the boxes moved off the objects it
    falls (the pooling reads the box, not the image)."""
    from pipelines.world.shapes import SHAPES
    from pipelines.world.teacher import load_shipped_teacher
    from pipelines.world.zeroshot import single_object_crops

    teacher, _ = load_shipped_teacher()
    images, boxes, labels = single_object_crops(tuple(SHAPES), 8, 3)
    text = teacher.encode_text(list(SHAPES))

    def accuracy(bx):
        emb = teacher.encode_regions_dense(images, bx, scales=(1.0,))
        return float(((emb @ text.T).argmax(1) == labels).float().mean())

    good = accuracy(boxes)
    assert good >= 0.6
    elsewhere = [(b + torch.tensor([48.0, 0.0, 48.0, 0.0])) % 80 for b in boxes]
    elsewhere = [torch.stack([b[:, 0], b[:, 1], b[:, 0] + 12, b[:, 1] + 12], 1) for b in elsewhere]
    assert accuracy(elsewhere) < good - 0.3


def test_methods_and_proposals_file_use_the_configured_region_teacher(tiny_world, tmp_path):
    teacher = make_teacher("det-rn", TINY_RN)
    ds = WorldDetDataModule(str(tiny_world)).dataset("train")
    det = tiny_detector()
    props = compute_proposals(det, ds, top_n=4, teacher=teacher, batch_size=4, region_teacher="dense", region_stride=16)
    loaded = load_proposals(save_proposals(props, tmp_path / "p.pt"))
    assert loaded["meta"]["region_teacher"] == "dense"
    i = ds.ids[1]
    image, _ = ds[1]
    want = teacher.encode_regions_dense(image[None], [loaded["proposals"][i]], output_stride=16)
    torch.testing.assert_close(loaded["teacher_regions"][i], want, atol=2e-3, rtol=0)
    assert not torch.allclose(loaded["teacher_regions"][i], teacher.encode_regions(image[None], [loaded["proposals"][i]]), atol=0.05)

    module = ViLD(teacher, tiny_detector(), image_weight=0.5, region_teacher="dense", region_stride=16)
    torch.testing.assert_close(module.teacher_regions([image], [loaded["proposals"][i]], (1.0, 1.5)), want)
    check_region_teacher(loaded["meta"], teacher, "dense")
    with pytest.raises(ValueError, match="holds dense region embeddings but this run's region_teacher is 'crop'"):
        check_region_teacher(loaded["meta"], teacher, "crop")


def test_sharded_proposals_store_reads_lazily_what_the_single_file_holds(tiny_world, tmp_path):
    from pipelines.data.proposals_shards import LazyRows, save_sharded, verify_sharded

    teacher = make_teacher("det-rn", TINY_RN)
    ds = WorldDetDataModule(str(tiny_world)).dataset("train")
    props = compute_proposals(tiny_detector(), ds, top_n=5, teacher=teacher, batch_size=4)
    single = load_proposals(save_proposals(props, tmp_path / "p.pt"))
    save_sharded(props, tmp_path / "store", shard_size=3)
    store = load_proposals(tmp_path / "store")
    assert isinstance(store["teacher_regions"], LazyRows) and len(list((tmp_path / "store").glob("*.safetensors"))) == 6
    assert store["meta"] | {"path": ""} == single["meta"] | {"path": ""}
    for i in ds.ids:
        assert torch.equal(store["proposals"][i], single["proposals"][i])
        assert torch.equal(store["teacher_regions"][i], single["teacher_regions"][i])
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert verify_sharded(tmp_path / "store", index) == []
    shard = tmp_path / "store" / "shard-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert verify_sharded(tmp_path / "store", index) == ["shard-00002.safetensors: checksum mismatch (corrupt)"]
    shard.write_bytes(bytes(data[:100]))
    with pytest.raises(ValueError, match="shard-00002.safetensors is 100 bytes, expected"):
        load_proposals(tmp_path / "store")
    # a ViLD-image training split reads it like the file
    dm = WorldDetDataModule(str(tiny_world), proposals=str(tmp_path / "p.pt"))
    _, target = dm.dataset("train")[0]
    save_sharded(props, tmp_path / "store2", shard_size=4)
    _, lazy = WorldDetDataModule(str(tiny_world), proposals=str(tmp_path / "store2")).dataset("train")[0]
    assert torch.equal(target["teacher_regions"], lazy["teacher_regions"])


def test_region_chunks_run_side_by_side_with_the_values_of_a_one_thread_run(monkeypatch):
    """On CPU ``encode_regions`` embeds its chunks in worker threads, one kernel thread each: the embeddings equal a
    one-thread run's bit for bit (values do not depend on what runs beside a chunk), and every chunk ran off the main
    thread with one kernel thread."""
    import threading

    from teachers import openclip

    teacher = make_teacher("det-rn", TINY_RN)
    teacher.region_chunk = 5
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 48, 48, generator=g)
    boxes = [torch.tensor([[2.0, 3.0, 20.0, 30.0], [10.0, 10.0, 40.0, 44.0], [0.0, 0.0, 47.0, 47.0]]),
             torch.tensor([[5.0, 6.0, 15.0, 16.0], [20.0, 1.0, 46.0, 30.0], [8.0, 30.0, 30.0, 47.0], [1.0, 1.0, 9.0, 9.0]])]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = teacher.encode_regions(images, boxes)
        torch.set_num_threads(2)
        seen = []
        crop = openclip.crop_and_resize

        def spy(*args, **kwargs):
            seen.append((threading.current_thread() is threading.main_thread(), torch.get_num_threads()))
            return crop(*args, **kwargs)

        monkeypatch.setattr(openclip, "crop_and_resize", spy)
        two = teacher.encode_regions(images, boxes)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 3 and all(not main and n == 1 for main, n in seen), seen  # 14 crops in chunks of 5
    assert torch.equal(one, two)
    # and they are each box's own embedding (one box per call, one after another)
    alone = torch.cat([teacher.encode_regions(images[i : i + 1], [b[j : j + 1]]) for i, b in enumerate(boxes) for j in range(len(b))])
    torch.testing.assert_close(two, alone, atol=1e-5, rtol=0)
    assert torch.cdist(two, two).add(torch.eye(len(two))).min() > 1e-4  # seven regions, each 10x the tolerance apart
