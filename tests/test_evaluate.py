"""``ovdistill evaluate``: detection AP against pycocotools / lvis run directly on the same files, segmentation
mIoU against an independent numpy confusion matrix, and the bad inputs each named in one line."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from real_formats import voc_palette, write_lvis

from pipelines.cli import main
from pipelines.data.seg_presets import get_preset


def _results(gt: dict, seed: int, segm: bool = False) -> list[dict]:
    """Jittered copies of most ground-truth boxes (some relabelled) plus false positives, seeded."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    out = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = a["bbox"]
        d = {"image_id": a["image_id"], "score": float(rng.random()),
             "category_id": a["category_id"] if rng.random() < 0.8 else int(rng.choice(cat_ids)),
             "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), max(1.0, w + rng.normal(0, 3)), max(1.0, h + rng.normal(0, 3))]}
        if segm:
            d["segmentation"] = a["segmentation"]
        out.append(d)
    for im in gt["images"]:
        for _ in range(2):
            d = {"image_id": im["id"], "category_id": int(rng.choice(cat_ids)), "score": float(rng.random()) * 0.5,
                 "bbox": [float(rng.integers(0, 40)), float(rng.integers(0, 40)), 12.0, 10.0]}
            if segm:
                d["segmentation"] = [[d["bbox"][0], d["bbox"][1], d["bbox"][0] + 12, d["bbox"][1], d["bbox"][0] + 12, d["bbox"][1] + 10]]
            out.append(d)
    return out


def _summarize(gt_path: Path, dets: list[dict], iou_type: str, cat_ids: list[int] | None = None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        ev = COCOeval(coco, coco.loadRes(dets), iou_type)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats * 100


def _evaluate(args: list[str], out: Path) -> dict:
    assert main(["evaluate", *args, "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_detection_ap_equals_cocoeval_on_the_same_files(tiny_world, tmp_path, iou_type):
    gt_path = tiny_world / "annotations" / "instances_test.json"
    gt = json.loads(gt_path.read_text())
    dets = _results(gt, 0, segm=iou_type == "segm")
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    report = _evaluate(["det", "--gt", str(gt_path), "--dt", str(tmp_path / "dt.json"), "--split", "world", "--iou-type", iou_type], tmp_path / "o")
    stats = _summarize(gt_path, dets, iou_type)
    m = report["metrics"]
    assert m["AP"] == pytest.approx(stats[0], abs=1e-6) and m["AP50"] == pytest.approx(stats[1], abs=1e-6)
    novel = json.loads((tiny_world / "split.json").read_text())["novel"]
    novel_ids = [c["id"] for c in gt["categories"] if c["name"] in novel]
    base_ids = [c["id"] for c in gt["categories"] if c["name"] not in novel]
    assert m["AP_novel"] == pytest.approx(_summarize(gt_path, dets, iou_type, novel_ids)[0], abs=1e-6)
    assert m["AP50_base"] == pytest.approx(_summarize(gt_path, dets, iou_type, base_ids)[1], abs=1e-6)
    assert 5 < m["AP50"] < 95  # the jittered results are neither perfect nor empty
    assert sorted(n for n, c in report["per_class"].items() if c["novel"]) == sorted(novel)
    for png in ("ap_per_class.png", "pr_novel.png"):
        with Image.open(tmp_path / "o" / png) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_results_in_another_id_space_are_mapped_by_name(tiny_world, tmp_path):
    gt_path = tiny_world / "annotations" / "instances_test.json"
    gt = json.loads(gt_path.read_text())
    dets = _results(gt, 1)
    args = ["det", "--gt", str(gt_path), "--split", "world"]
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    plain = _evaluate([*args, "--dt", str(tmp_path / "dt.json")], tmp_path / "a")["metrics"]
    theirs = [{"id": 100 + c["id"], "name": c["name"]} for c in gt["categories"]]
    (tmp_path / "cats.json").write_text(json.dumps({"categories": theirs}))
    (tmp_path / "shifted.json").write_text(json.dumps([{**d, "category_id": d["category_id"] + 100} for d in dets]))
    mapped = _evaluate([*args, "--dt", str(tmp_path / "shifted.json"), "--dt-categories", str(tmp_path / "cats.json")], tmp_path / "b")
    assert mapped["metrics"] == plain
    named = [{k: v for k, v in d.items() if k != "category_id"} | {"category_name": gt["categories"][d["category_id"] - 1]["name"]}
             for d in dets]
    assert all(c["id"] == i + 1 for i, c in enumerate(gt["categories"]))
    (tmp_path / "named.json").write_text(json.dumps(named))
    assert _evaluate([*args, "--dt", str(tmp_path / "named.json")], tmp_path / "c")["metrics"] == plain


def test_detection_bad_inputs_are_one_line_errors(tiny_world, tmp_path, capsys):
    gt_path = tiny_world / "annotations" / "instances_test.json"
    gt = json.loads(gt_path.read_text())
    dets = _results(gt, 2)
    base = ["evaluate", "det", "--gt", str(gt_path), "--split", "world", "--out", str(tmp_path / "o")]

    def run(name: str, payload, *extra) -> str:
        path = tmp_path / name
        path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
        rc = main([*base, "--dt", str(path), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        return err

    assert "999999" in run("foreign.json", [*dets, {**dets[0], "image_id": 999999}])
    assert "truncated" in run("cut.json", json.dumps(dets)[:200])
    assert "[4, 5, 6]" in run("box3.json", [{**dets[0], "bbox": [4, 5, 6]}])
    assert "[77]" in run("cat.json", [{**dets[0], "category_id": 77}])
    (tmp_path / "cats.json").write_text(json.dumps([{"id": 1, "name": "unicorn"}]))
    assert "unicorn" in run("unmapped.json", [{**dets[0], "category_id": 1}], "--dt-categories", str(tmp_path / "cats.json"))
    # --strict false: the foreign image's detections are dropped, the rest evaluated, the count reported
    (tmp_path / "foreign.json").write_text(json.dumps([*dets, {**dets[0], "image_id": 999999}]))
    with pytest.warns(UserWarning, match="1 image ids"):
        assert main([*base, "--dt", str(tmp_path / "foreign.json"), "--strict", "false"]) == 0
    assert any("1 image ids" in n for n in json.loads((tmp_path / "o" / "metrics.json").read_text())["notes"])


def test_lvis_ap_equals_lvis_eval_on_the_same_files(tmp_path):
    from lvis import LVIS, LVISEval, LVISResults

    from distill.metrics.lvis import _numpy_float_alias

    gt_path = write_lvis(tmp_path) / "lvis_v1_val.json"
    gt = json.loads(gt_path.read_text())
    dets = _results(gt, 3)
    dets = [{**d, "category_id": d["category_id"] if d["category_id"] != 3 else 2} for d in dets]
    dets.append({"image_id": gt["images"][0]["id"], "category_id": 3, "bbox": [1.0, 1.0, 20.0, 20.0], "score": 0.9})  # a negative class
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    m = _evaluate(["det", "--gt", str(gt_path), "--dt", str(tmp_path / "dt.json"), "--split", "lvis"], tmp_path / "o")["metrics"]
    with contextlib.redirect_stdout(io.StringIO()), _numpy_float_alias():
        lvis = LVIS(str(gt_path))
        ev = LVISEval(lvis, LVISResults(lvis, dets, max_dets=300), "bbox")
        ev.run()
    for key in ("AP", "AP50", "APr", "APf"):
        assert m[key] == pytest.approx(ev.results[key] * 100, abs=1e-6), key
    assert m["APc"] is None and ev.results["APc"] == -1  # no common-class ground truth: nothing to evaluate, not zero


def _confusion_miou(pairs: list[tuple[np.ndarray, np.ndarray]], k: int, unseen: list[int]) -> dict:
    conf = np.zeros((k, k), np.int64)
    for pred, gt in pairs:
        keep = gt != 255
        np.add.at(conf, (gt[keep], pred[keep]), 1)
    inter = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan) * 100
    seen = [c for c in range(k) if c not in unseen]
    return {"mIoU": np.nanmean(iou), "mIoU_seen": np.nanmean(iou[seen]), "mIoU_unseen": np.nanmean(iou[unseen]), "iou": iou}


def _voc_folders(tmp_path: Path, seed: int, size: tuple[int, int], labels: int, predicted: int, p_right: float,
                 ignore_rows: int = 0, palette: bool = False) -> tuple[Path, Path, list]:
    """VOC-style ground truth (0 = background, 1..20, 255 = ignore) for ``labels`` images, predictions (right with
    probability ``p_right``, else random; palette PNGs at odd indices when ``palette``) for the first ``predicted``;
    returns the folders and the (prediction, reduced ground truth) pairs an independent count should score."""
    k = len(get_preset("voc20").names)
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    expected = []
    for i in range(labels):
        gt = rng.integers(0, k + 1, size).astype(np.uint8)
        gt[:ignore_rows] = 255
        Image.fromarray(gt, "L").save(gt_dir / f"im{i}.png")
        if i >= predicted:
            continue
        reduced = np.where(gt == 0, 255, np.where(gt == 255, 255, gt.astype(np.int64) - 1))
        pred = np.where(rng.random(gt.shape) < p_right, np.clip(reduced, 0, k - 1), rng.integers(0, k, gt.shape)).astype(np.uint8)
        im = Image.fromarray(pred, "P" if palette and i % 2 else "L")
        if palette and i % 2:
            im.putpalette(voc_palette())
        im.save(pred_dir / f"im{i}.png")
        expected.append((pred.astype(np.int64), reduced))
    return gt_dir, pred_dir, expected


def test_segmentation_miou_equals_a_numpy_confusion_matrix(tmp_path):
    """VOC's 20-class protocol: ground truth 0 = background (ignored, reduce_zero_label), 255 = ignore; palette and
    grayscale predictions; two worker processes."""
    preset = get_preset("voc20")
    k, unseen = len(preset.names), [preset.names.index(u) for u in preset.unseen]
    gt_dir, pred_dir, expected = _voc_folders(tmp_path, 0, (24, 32), 6, 6, 0.6, ignore_rows=3, palette=True)
    m = _evaluate(["seg", "--gt", str(gt_dir), "--pred", str(pred_dir), "--preset", "voc20", "--workers", "2"], tmp_path / "o")
    ref = _confusion_miou(expected, k, unseen)
    for key in ("mIoU", "mIoU_seen", "mIoU_unseen"):
        assert m["metrics"][key] == pytest.approx(ref[key], abs=1e-4), key
    assert [m["IoU_per_class"][n] for n in preset.names] == pytest.approx(list(ref["iou"]), abs=1e-4)
    assert 10 < m["metrics"]["mIoU"] < 90
    with Image.open(tmp_path / "o" / "iou_per_class.png") as im:
        assert im.format == "PNG"


def test_segmentation_bad_inputs_are_one_line_errors(tiny_world, tmp_path, capsys):
    gt_dir = tiny_world / "labels" / "test"
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    stems = sorted(p.name for p in gt_dir.glob("*.png"))
    for name in stems:
        Image.open(gt_dir / name).save(pred_dir / name)
    base = ["evaluate", "seg", "--gt", str(gt_dir), "--pred", str(pred_dir), "--preset", "world", "--out", str(tmp_path / "o")]
    assert main(base) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["metrics"]["mIoU"] == pytest.approx(100.0)

    def fails(fragment: str) -> None:
        assert main(base) == 2
        err = capsys.readouterr().err
        assert fragment in err and len(err.strip().splitlines()) == 1, err

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pred_dir / stems[0])
    fails(f"{stems[0]} is (10, 10)")
    Image.fromarray(np.full((96, 96), 42, np.uint8)).save(pred_dir / stems[0])
    fails("[42]")
    (pred_dir / stems[0]).unlink()
    fails(stems[0])
    with pytest.warns(UserWarning, match=f"1 of {len(stems)}"):
        assert main([*base, "--strict", "false"]) == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["images"] == len(stems) - 1


def test_segmentation_list_evaluates_one_split_of_a_mixed_label_folder(tmp_path, capsys):
    """VOC / Context keep every split's labels in one folder: ``--list val.txt`` evaluates the listed ids only (the
    others have no prediction, which is no error), and a listed id without a label is named."""
    preset = get_preset("voc20")
    k, unseen = len(preset.names), [preset.names.index(u) for u in preset.unseen]
    # im0..im3 are the "val" split; im4 and im5 are "train" labels with no prediction
    gt_dir, pred_dir, expected = _voc_folders(tmp_path, 1, (16, 16), 6, 4, 0.5)
    (tmp_path / "val.txt").write_text("im0\nim1\nim2\nim3\n")
    args = ["seg", "--gt", str(gt_dir), "--pred", str(pred_dir), "--preset", "voc20", "--list", str(tmp_path / "val.txt")]
    m = _evaluate(args, tmp_path / "o")
    ref = _confusion_miou(expected, k, unseen)
    assert m["images"] == 4
    for key in ("mIoU", "mIoU_seen", "mIoU_unseen"):
        assert m["metrics"][key] == pytest.approx(ref[key], abs=1e-4), key
    capsys.readouterr()
    assert main(["evaluate", "seg", "--gt", str(gt_dir), "--pred", str(pred_dir), "--preset", "voc20", "--out", str(tmp_path / "o2")]) == 2
    assert "2 of 6 ground-truth labels have no prediction" in capsys.readouterr().err  # without the list: the train labels
    (tmp_path / "val.txt").write_text("im0\nim9\n")
    assert main(["evaluate", *args, "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "1 of the 2 ids" in err and "im9.png" in err, err
