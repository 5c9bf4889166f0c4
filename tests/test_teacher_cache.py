"""The dense teacher cache: cached == live, augmentation geometry, stale keys refused, faults recomputed."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_segmenter
from safetensors.torch import load_file

from distill.seg_modules import LSegDenseDistill, MaskCLIPPlus
from pipelines.cache.dense import DenseCacheJob, build_dense_cache
from pipelines.data.seg_datamodule import WorldSegDataModule
from pipelines.data.teacher_cache import DenseCache, crop_dense

FP16 = 2e-3  # cached maps are unit vectors stored in fp16


def _trainer():
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)


def _build(teacher, world, out, shard_size=3, rebuild=False, **kw):
    dm = WorldSegDataModule(str(world))
    job = DenseCacheJob(teacher, dm.dataset("train"), out, "maskclip", (64, 64), None, shard_size=shard_size, **kw)
    return job, build_dense_cache(job, _trainer(), rebuild=rebuild)


@pytest.fixture(scope="module")
def built(vit_teacher, tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "dense"
    job, summary = _build(vit_teacher, tiny_world, out)
    return job, summary, out


def test_cached_maps_equal_the_live_teacher_on_image_and_mirror_image(built, vit_teacher, tiny_world):
    job, summary, out = built
    assert summary["images"] == 16 and summary["shards"] == 6 and summary["computed_here"] == 6
    cache = DenseCache(out)
    ds = WorldSegDataModule(str(tiny_world)).dataset("train")
    for i in (0, 7, 15):
        image = ds[i]["image"][None]
        live = vit_teacher.encode_dense(image, "maskclip", (64, 64))[0]
        mirror = vit_teacher.encode_dense(image.flip(-1), "maskclip", (64, 64))[0]
        assert (cache.get(i) - live).abs().max() < FP16
        assert (cache.get(i, flip=True) - mirror).abs().max() < FP16
        assert not torch.allclose(cache.get(i, flip=True), cache.get(i).flip(-1), atol=1e-2)  # a real second forward
    index = json.loads((out / "index.json").read_text())
    assert index["stems"] == [p.stem for p in ds.images] and index["key"]["weights"] == job.key["weights"]


def test_training_batches_carry_the_map_of_their_augmented_view(built, vit_teacher, tiny_world):
    """Flip-only augmentation (the world's): every training sample's cached map is the live teacher's map of
    exactly the image in the batch, and MaskCLIP+'s teacher scores from it equal the live path."""
    _, _, out = built
    dm = WorldSegDataModule(str(tiny_world), batch_size=8, teacher_cache=str(out))
    batch = next(iter(dm.train_dataloader()))
    live = vit_teacher.encode_dense(batch["image"], "maskclip", (64, 64))
    assert (batch["teacher_dense"] - live).abs().max() < FP16
    module = MaskCLIPPlus(vit_teacher, tiny_segmenter(vit_teacher.embed_dim), teacher_size=(64, 64))
    module._set_vocabulary(dm.vocabulary)
    module.setup("test")
    cached, valid = module.teacher_scores(batch)
    direct = module.teacher_logits(batch["image"], module.text)
    assert valid.all() and (cached - direct).abs().max() < 5e-3
    assert (cached.argmax(1) == direct.argmax(1)).float().mean() > 0.995


def test_crop_dense_reads_the_window_on_the_live_grid():
    """A crop aligned with the grid returns exactly those cells; padding past the image is zero."""
    g = torch.Generator().manual_seed(0)
    dense = F.normalize(torch.randn(5, 8, 8, generator=g), dim=0)
    # zoom in on a map linear in x and y (bilinear sampling is then exact): 64 px image, 8 px cells; the window
    # x 16..48, y 8..40 puts output cell (i, j) at map position (y 0.75 + i/2, x 1.75 + j/2)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    linear = torch.stack([xx, yy, 2 * xx - yy])
    win = crop_dense(linear, (16, 8, 48, 40), (64, 64))
    j = 1.75 + torch.arange(8.0) / 2
    i = 0.75 + torch.arange(8.0) / 2
    assert torch.allclose(win[0], j.expand(8, 8), atol=1e-5) and torch.allclose(win[1], i[:, None].expand(8, 8), atol=1e-5)
    half = crop_dense(dense, (16, 8, 80, 72), (64, 64))  # 2x zoom-out: cells map 1:1 onto the 8x8 grid
    assert torch.allclose(half[:, :7, :6], dense[:, 1:8, 2:8], atol=1e-6)
    assert half[:, :, 6:].abs().max() == 0 and half[:, 7:, :].abs().max() == 0
    assert torch.equal(crop_dense(dense, (0, 0, 64, 64), (64, 64)), dense)


def test_scale_crop_augmentation_maps_follow_the_image(built, vit_teacher, tiny_world):
    """With random scale + crop + flip, the batch's map is the cached whole-image map cut at the sample's
    window: it matches the live teacher on the augmented image better than any other sample's map does, and
    where the view is padding there is no teacher signal (zero map, no MaskCLIP+ pseudo label)."""
    _, _, out = built
    dm = WorldSegDataModule(str(tiny_world), batch_size=8, teacher_cache=str(out), crop_size=48, scale_range=(0.5, 1.5))
    batch = next(iter(dm.train_dataloader()))
    live = vit_teacher.encode_dense(batch["image"], "maskclip", (64, 64))
    cached = batch["teacher_dense"]
    valid = cached.abs().sum(1) > 0
    agree = ((cached * live).sum(1) * valid).sum((1, 2)) / valid.sum((1, 2))
    shuffled = ((cached.roll(1, 0) * live).sum(1) * valid).sum((1, 2)) / valid.sum((1, 2))
    assert (agree > shuffled).all(), (agree, shuffled)
    padded = (batch["image"].abs().sum(1) == 0) & (batch["label"] == 255)  # the crop reached past a small scaled image
    has_pad = padded[:, -1, :].all(1) | padded[:, :, -1].all(1) | padded[:, :, 0].all(1)
    assert has_pad.any() and (~has_pad).any()
    module = MaskCLIPPlus(vit_teacher, tiny_segmenter(vit_teacher.embed_dim), teacher_size=(64, 64))
    module._set_vocabulary(dm.vocabulary)
    module.setup("test")
    _, pixel_valid = module.teacher_scores(batch)
    assert pixel_valid[has_pad][padded[has_pad]].float().mean() <= 0.2  # padding: (almost) no teacher signal
    assert pixel_valid[~padded].float().mean() > 0.9
    module.self_training = lambda: False
    logits = torch.randn(len(batch["image"]), len(dm.class_names), *batch["label"].shape[-2:])
    target = module.targets(batch, logits)  # transductive: ignored pixels get the teacher's unseen arg-max ...
    assert (target[padded] == 255).float().mean() >= 0.8  # ... but not where the view is padding
    assert (target[~padded] != 255).float().mean() > 0.9


def test_a_cache_of_another_teacher_or_preprocessing_is_refused(built, vit_teacher, rn_teacher, tiny_world, tmp_path):
    _, _, out = built
    dm = WorldSegDataModule(str(tiny_world), batch_size=8, teacher_cache=str(out))
    for teacher, kw, field in ((vit_teacher, {"teacher_size": (32, 32)}, "size"), (rn_teacher, {"teacher_size": (64, 64)}, "teacher")):
        module = LSegDenseDistill(teacher, tiny_segmenter(teacher.embed_dim), **kw)
        trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
        with pytest.raises(ValueError, match=f"another teacher or preprocessing.*{field}: cache"):
            trainer.fit(module, dm)
    with pytest.raises(ValueError, match="another key.*--rebuild"):
        _build(rn_teacher, tiny_world, out)


def test_a_cache_of_other_images_is_refused(built, tiny_world, tmp_path):
    from pipelines.world import SceneConfig, WorldSpec, write_world

    _, _, out = built
    other = write_world(WorldSpec(seed=6, splits={"train": 12, "val": 2, "test": 2}, scene=SceneConfig(image_size=64)), tmp_path / "w")
    dm = WorldSegDataModule(str(other), teacher_cache=str(out))
    with pytest.raises(ValueError, match="built for 16 images but the training split.* has 12"):
        dm.train_dataloader()


def test_damaged_shards_are_named_recomputed_and_the_rest_kept(vit_teacher, tiny_world, tmp_path, capsys):
    out = tmp_path / "dense"
    _build(vit_teacher, tiny_world, out)
    before = {p.name: p.read_bytes() for p in out.glob("shard-*")}
    (out / "shard-00001.safetensors").write_bytes(before["shard-00001.safetensors"][:500])  # truncated
    flipped = bytearray(before["shard-00003.safetensors"])
    flipped[-7] ^= 0xFF
    (out / "shard-00003.safetensors").write_bytes(bytes(flipped))  # one corrupt byte, same size
    (out / "shard-00004.sha256").unlink()  # killed between the shard and its checksum
    (out / "shard-00005.safetensors").unlink()
    with pytest.raises(ValueError, match="shard-00001.safetensors is 500 bytes, expected"):
        DenseCache(out)
    _, summary = _build(vit_teacher, tiny_world, out)
    log = capsys.readouterr().out
    assert "shard-00001.safetensors: truncated" in log and "shard-00003.safetensors: checksum mismatch" in log
    assert "shard-00004.safetensors: no checksum" in log
    assert summary["computed_here"] == 4  # 1, 3, 4 and 5; 0 and 2 kept
    assert {p.name: p.read_bytes() for p in out.glob("shard-*")} == before


def test_rebuild_replaces_a_cache_of_another_key(vit_teacher, tiny_world, tmp_path):
    out = tmp_path / "dense"
    _build(vit_teacher, tiny_world, out, shard_size=4)
    _, summary = _build(vit_teacher, tiny_world, out, shard_size=8, rebuild=True)
    assert summary["computed_here"] == 2
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert load_file(out / "shard-00001.safetensors")["index"].tolist() == list(range(8, 16))


def test_disk_full_leaves_earlier_shards_and_says_so(vit_teacher, tiny_world, tmp_path, monkeypatch):
    from pipelines.data import shards

    real = shards.save_with

    def full(write, path):  # the disk fills up at shard 2 (shards may be written side by side: chosen by name)
        if path.name == "shard-00002.safetensors":
            raise OSError(28, "No space left on device")
        return real(write, path)

    monkeypatch.setattr(shards, "save_with", full)
    out = tmp_path / "dense"
    with pytest.raises(OSError, match=r"shard-00002.safetensors.*No space left.*earlier shards are intact"):
        _build(vit_teacher, tiny_world, out)
    monkeypatch.setattr(shards, "save_with", real)
    kept = sorted(p.name for p in out.glob("shard-*.safetensors"))
    # shards 0 and 1 came before; 3 may have been computed beside 2; nothing of 2 is left, no temporary file either
    assert kept[:2] == ["shard-00000.safetensors", "shard-00001.safetensors"] and "shard-00002.safetensors" not in kept
    assert len(list(out.glob("shard-*.sha256"))) == len(kept) and not list(out.glob(".*.tmp"))
    _, summary = _build(vit_teacher, tiny_world, out)
    assert summary["computed_here"] == 6 - len(kept)


def test_the_cached_training_path_hides_held_out_labels_read_from_disk(vit_teacher, tiny_world, tmp_path):
    """Training on a split whose files do hold novel labels (the world's test split): with a cache the batches
    still carry none of them."""
    splits = {"train": ["images/test", "labels/test"], "val": ["images/val", "labels/val"], "test": ["images/test", "labels/test"]}
    dm = WorldSegDataModule(str(tiny_world), batch_size=8, splits=splits, teacher_cache=str(tmp_path / "c"))
    unseen = torch.tensor(dm.vocabulary.held_out_ids)
    on_disk = torch.stack([dm.dataset("test")[i]["label"] for i in range(8)])
    assert torch.isin(on_disk, unseen).any()  # the files hold them
    build_dense_cache(DenseCacheJob(vit_teacher, dm.dataset("train"), tmp_path / "c", "maskclip", (64, 64), None), _trainer())
    batch = next(iter(dm.train_dataloader()))
    assert "teacher_dense" in batch and not torch.isin(batch["label"], unseen).any()


def test_shards_built_side_by_side_are_the_bytes_of_a_one_thread_build(vit_teacher, tiny_world, tmp_path, monkeypatch):
    """On CPU a process computes as many shards at once as it has threads, each kernel single-threaded: the files must
    equal a one-thread build's byte for byte, and every shard must have been computed by a worker thread."""
    import threading

    from pipelines.cache import dense

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _build(vit_teacher, tiny_world, tmp_path / "one")
        torch.set_num_threads(2)
        seen = []
        compute = dense.DenseCacheJob.compute

        def spy(self, shard):
            seen.append((threading.current_thread() is threading.main_thread(), torch.get_num_threads()))
            return compute(self, shard)

        monkeypatch.setattr(dense.DenseCacheJob, "compute", spy)
        _build(vit_teacher, tiny_world, tmp_path / "two")
        assert torch.get_num_threads() == 2  # restored after the side-by-side pass
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 6 and all(not main and n == 1 for main, n in seen), seen
    one, two = sorted((tmp_path / "one").glob("shard-*")), sorted((tmp_path / "two").glob("shard-*"))
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 12  # 6 shards + checksum sidecars
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))


def test_each_world_method_reads_the_cache_of_its_own_teacher_map(rn_teacher, tiny_world):
    """The demo's dense distillation distils another teacher map than MaskCLIP+ reads (``SEG_METHODS``): each method
    gets the cache of its own map, and a method that reads no map gets none."""
    from distill.seg_modules import LSeg
    from pipelines.bench.segmentation import WORLD_TEACHER_MAP, world_method_data

    def cache_key(dm):
        return json.loads((Path(dm.hparams.teacher_cache) / "index.json").read_text())["key"]

    default = world_method_data(rn_teacher, tiny_world, MaskCLIPPlus, {"transductive": True}, progress=False)
    other = world_method_data(rn_teacher, tiny_world, LSegDenseDistill, {"teacher_size": (112, 112)}, progress=False)
    assert cache_key(default)["size"] == list(WORLD_TEACHER_MAP["teacher_size"])
    assert cache_key(default)["stride"] == cache_key(other)["stride"] == WORLD_TEACHER_MAP["teacher_stride"]
    assert cache_key(other)["size"] == [112, 112] and default.hparams.teacher_cache != other.hparams.teacher_cache
    assert world_method_data(rn_teacher, tiny_world, LSeg, {"teacher_size": (112, 112)}).hparams.teacher_cache is None
