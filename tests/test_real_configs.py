"""Every shipped real-data config, end to end, on tiny datasets in the real on-disk layouts and with the real
architectures the configs name (CLIP ViT-B/16 and ViT-B/32 towers, DeepLabV3+-R101 and Faster R-CNN-R50
students) — random weights saved to local files, reduced input sizes, 2 steps. The detection chain is the
README's: fit ViLD-text -> proposals -> fit ViLD / ViLD-ensemble -> pseudo-label -> fit pseudo-box -> test."""
from __future__ import annotations

import gc
import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from config_combos import DET_REAL, SEG_REAL, config_args
from real_formats import write_coco, write_coco_stuff, write_context, write_lvis, write_voc

from pipelines.cli import lightning_cli, main
from pipelines.evaluate.det_results import evaluate_detections
from pipelines.evaluate.seg_folders import evaluate_folders

# CI runs the chain on CPU. On a GPU machine `OVDISTILL_TEST_ACCELERATOR=gpu pytest -m slow tests/test_real_configs.py`
# runs it with the configs' own strategy and precision (DDP over NCCL, 16-mixed); OVDISTILL_TEST_PRECISION overrides
# the precision (bf16-mixed).
ACCELERATOR = os.environ.get("OVDISTILL_TEST_ACCELERATOR", "cpu")
if ACCELERATOR == "cpu":
    DEVICE = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto", "--trainer.precision", "32-true"]
else:
    DEVICE = ["--trainer.accelerator", ACCELERATOR, "--trainer.devices", "1"]
    if os.environ.get("OVDISTILL_TEST_PRECISION"):
        DEVICE += ["--trainer.precision", os.environ["OVDISTILL_TEST_PRECISION"]]
TRAINER = [*DEVICE, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0"]
FIT = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1"]
SEG_ROOTS = {"voc20": "VOCdevkit/VOC2012", "context59": "VOCdevkit/VOC2010", "context60": "VOCdevkit/VOC2010",
             "coco_stuff171": "coco_stuff164k"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Random real-architecture weights as local files, and the tiny datasets."""
    import torchvision

    from teachers import OpenCLIPTeacher

    root = tmp_path_factory.mktemp("real")
    out = {"root": root}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("ViT-B-16-quickgelu", "ViT-B-32-quickgelu"):
            torch.manual_seed(0)
            teacher = OpenCLIPTeacher(name, None)
            out[name] = root / f"{name}.pt"
            torch.save(teacher.model.state_dict(), out[name])
            del teacher
    out["resnet101"] = root / "resnet101_imagenet.pth"
    torch.save(torchvision.models.resnet101().state_dict(), out["resnet101"])
    out["resnet50"] = root / "resnet50_imagenet.pth"
    torch.save(torchvision.models.resnet50().state_dict(), out["resnet50"])
    data = root / "data"
    write_voc(data), write_context(data), write_coco_stuff(data), write_coco(data), write_lvis(data)
    out["data"] = data
    gc.collect()
    return out


def _run(args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    gc.collect()


def _last(run: Path) -> Path:
    ckpts = sorted(run.rglob("last.ckpt"))
    assert ckpts, f"no last.ckpt under {run}"
    return ckpts[-1]


def _seg_args(files, data: str, method: str, run: Path) -> list[str]:
    """A real segmentation config at reduced sizes: the files' random weights and tiny dataset, 64 px crops."""
    cfg = config_args(["configs/seg/real.yaml", f"configs/seg/data/{data}.yaml", f"configs/seg/method/{method}.yaml"])
    return [*cfg, *TRAINER, "--model.init_args.teacher.init_args.pretrained", str(files["ViT-B-16-quickgelu"]),
            "--model.init_args.templates", "simple", "--model.init_args.crop", "64", "--model.init_args.stride", "48",
            "--data.init_args.root", str(files["data"] / SEG_ROOTS[data]), "--data.init_args.crop_size", "64",
            "--data.init_args.img_scale", "[160, 64]",  # the configs' keep-ratio protocol at a reduced scale
            "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0", "--trainer.default_root_dir", str(run)]


# what `ovdistill evaluate seg` reads for each preset's test split: label folder, label suffix, id list
SEG_EVAL = {"voc20": ("SegmentationClass", ".png", "ImageSets/Segmentation/val.txt"),
            "context59": ("SegmentationClassContext", ".png", "ImageSets/SegmentationContext/val.txt"),
            "context60": ("SegmentationClassContext", ".png", "ImageSets/SegmentationContext/val.txt"),
            "coco_stuff171": ("annotations/val2017", "_labelTrainIds.png", None)}


@pytest.mark.slow
@pytest.mark.parametrize("data, method", SEG_REAL, ids=[f"{d}-{m}" for d, m in SEG_REAL])
def test_seg_real_config(files, data, method, tmp_path):
    over = _seg_args(files, data, method, tmp_path)
    ckpt = []
    if method not in ("maskclip", "maskclip_pamr"):  # training-free MaskCLIP only tests
        # the configs' own teacher_size (input): CLIP sees each 64 px training crop, as the official MaskCLIP+
        over += ["--model.init_args.student.init_args.encoder_weights", str(files["resnet101"])]
        _run(["fit", *over, *FIT])
        ckpt = ["--ckpt_path", str(_last(tmp_path))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tested = {k: float(v) for k, v in lightning_cli(["test", *over, *ckpt]).trainer.callback_metrics.items()}
    # `predict` then `evaluate seg` on the real layout (palette / TrainIds labels, id lists): test's figures
    _run(["predict", *over, *ckpt, "--predictions.output_dir", str(tmp_path / "preds")])
    root = files["data"] / SEG_ROOTS[data]
    labels, suffix, listed = SEG_EVAL[data]
    scored = evaluate_folders(root / labels, tmp_path / "preds", data, gt_suffix=suffix, list_file=root / listed if listed else None)
    for key in ("mIoU", "mIoU_seen", "mIoU_unseen"):
        assert scored.metrics[key] == pytest.approx(tested[f"test/{key}"], abs=1e-4, nan_ok=True), key


@pytest.mark.slow
def test_seg_real_teacher_cache_needs_a_fixed_size_then_trains_from_it(files, tmp_path):
    """The README's real-data cache commands: the real configs' teacher sees each crop (``input``), which a cache of
    whole images cannot hold, so ``cache`` refuses it by name; with a fixed size it caches and a fit reads it."""
    over = [*_seg_args(files, "voc20", "maskclip_plus", tmp_path), "--model.init_args.student.init_args.encoder_weights", str(files["resnet101"])]
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="teacher_size: input"):
        main(["cache", *over, "--out", str(cache)])
    assert not (cache / "index.json").exists()
    fixed = [*over, "--model.init_args.teacher_size", "[64,64]"]
    _run(["cache", *fixed, "--out", str(cache)])
    index = json.loads((cache / "index.json").read_text())
    assert list(index["key"]["size"]) == [64, 64]
    _run(["fit", *fixed, "--data.init_args.teacher_cache", str(cache), *FIT])
    assert _last(tmp_path).is_file()
    # a run whose size differs from the cache's is refused, naming the field
    with pytest.raises(ValueError, match=r"size: cache \[64, 64\] vs run \[96, 96\]"):
        main(["fit", *over, "--model.init_args.teacher_size", "[96,96]", "--data.init_args.teacher_cache", str(cache), *FIT])


@pytest.mark.slow
def test_det_real_configs_in_the_readme_order(files, tmp_path):
    data = files["data"]

    def args(dataset, method, run):
        cfg = config_args(["configs/det/real.yaml", f"configs/det/data/{dataset}.yaml", f"configs/det/method/{method}.yaml"])
        root = data / "coco" if dataset == "ov_coco" else data
        over = [*cfg, *TRAINER, "--model.init_args.teacher.init_args.pretrained", str(files["ViT-B-32-quickgelu"]),
                "--model.init_args.templates", "simple", "--model.init_args.student.init_args.weights", str(files["resnet50"]),
                "--model.init_args.student.init_args.min_size", "64", "--model.init_args.student.init_args.max_size", "96",
                "--data.init_args.root", str(root), "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
                "--trainer.default_root_dir", str(tmp_path / run)]
        if dataset == "ov_lvis":
            over += ["--model.init_args.lvis_json", str(data / "lvis/lvis_v1_val.json")]
        return over

    assert ("ov_lvis", "vild_text") in DET_REAL
    lvis = args("ov_lvis", "vild_text", "lvis")
    _run(["fit", *lvis, *FIT])
    _run(["test", *lvis, "--ckpt_path", str(_last(tmp_path / "lvis"))])

    base = args("ov_coco", "vild_text", "text")
    _run(["fit", *base, *FIT])
    ckpt = _last(tmp_path / "text")
    # `predict` writes COCO results in COCO's own category ids, which `evaluate det` scores as `test` did
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tested = {k: float(v) for k, v in lightning_cli(["test", *base, "--ckpt_path", str(ckpt)]).trainer.callback_metrics.items()}
    _run(["predict", *base, "--ckpt_path", str(ckpt), "--predictions.output_dir", str(tmp_path / "preds")])
    gt_file = data / "coco/annotations/instances_val2017.json"
    results = json.loads((tmp_path / "preds/results.json").read_text())
    assert results and {r["category_id"] for r in results} <= {c["id"] for c in json.loads(gt_file.read_text())["categories"]}
    scored = evaluate_detections(gt_file, tmp_path / "preds/results.json", "ov_coco").metrics
    for key in ("AP", "AP50", "AP50_base", "AP50_novel"):
        assert (scored[key] if scored[key] is not None else float("nan")) == pytest.approx(tested[f"test/{key}"], abs=1e-3, nan_ok=True), key
    props, pseudo = tmp_path / "proposals_train.pt", tmp_path / "pseudo_labels_train.json"
    _run(["proposals", *base, "--ckpt", str(ckpt), "--out", str(props), "--top-n", "4"])
    _run(["pseudo-label", *base, "--ckpt", str(ckpt), "--out", str(pseudo), "--threshold", "0.0"])
    coco = json.loads(pseudo.read_text())
    assert [c["id"] for c in coco["categories"]][:3] == [5, 6, 17]  # airplane, bus, cat: COCO's own ids
    for method, extra in (("vild", ["--data.init_args.proposals", str(props)]),
                          ("vild_ensemble", ["--data.init_args.proposals", str(props)]),
                          ("pseudo_box", ["--data.init_args.pseudo_labels", str(pseudo)])):
        over = args("ov_coco", method, method) + extra
        _run(["fit", *over, *FIT])
        _run(["test", *over, "--ckpt_path", str(_last(tmp_path / method))])
