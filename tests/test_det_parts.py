"""Detection student, data, proposals, pseudo boxes and module pieces, each against an independent computation."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RN, make_teacher
from torchvision.ops import box_iou

from distill.det_modules import BaseOnlyDetector, PseudoBoxDetector, ViLD
from distill.pseudo_boxes import select_pseudo_boxes
from distill.vocabulary import Vocabulary
from pipelines.data.coco_det import CocoDetection
from pipelines.data.det_datamodule import CocoDetDataModule, WorldDetDataModule, load_pseudo_labels
from pipelines.data.det_splits import OV_COCO_BASE, OV_COCO_NOVEL, split_classes
from pipelines.data.proposals_file import load_proposals, save_proposals
from pipelines.offline.proposals import compute_proposals
from students import DualBranchHead, EmbeddingBoxPredictor, RegionEmbeddingDetector, build_backbone

D = 24


def tiny_detector(seed: int = 0, **kw) -> RegionEmbeddingDetector:
    torch.manual_seed(seed)
    return RegionEmbeddingDetector(
        D, "resnet18", fpn_channels=16, representation_size=32, anchor_sizes=[8, 16, 32, 64, 128], min_size=64, max_size=64,
        rpn_pre_nms_top_n_train=50, rpn_post_nms_top_n_train=20, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
        box_batch_size_per_image=16, box_score_thresh=0.0, **kw,
    )


@pytest.fixture(scope="module")
def teacher():
    return make_teacher("det-rn", TINY_RN)


def test_predictor_scores_are_cosines_over_tau_with_class_agnostic_boxes():
    torch.manual_seed(0)
    p = EmbeddingBoxPredictor(16, D, tau=0.05)
    text = F.normalize(torch.randn(5, D), dim=-1)
    x = torch.randn(7, 16)
    p.text = text
    logits, deltas = p(x)
    e = F.normalize(x @ p.proj.weight.T + p.proj.bias, dim=-1)
    classes = torch.cat([F.normalize(p.background, dim=0)[None], text])
    torch.testing.assert_close(logits, e @ classes.T / 0.05)
    assert deltas.shape == (7, 24)
    torch.testing.assert_close(deltas.view(7, 6, 4), (x @ p.bbox_pred.weight.T + p.bbox_pred.bias)[:, None].expand(7, 6, 4))
    p.text = text[:2]  # the vocabulary is whatever is passed
    assert p(x)[0].shape == (7, 3)


def test_ensemble_blend_follows_vild_formula_and_is_not_renormalised():
    torch.manual_seed(1)
    p = EmbeddingBoxPredictor(16, D, tau=0.1, image_head="projection").eval()
    text = F.normalize(torch.randn(4, D), dim=-1)
    novel = torch.tensor([False, True, False, True])
    x = torch.randn(5, 16)
    p.text, p.novel_mask, p.ensemble_lambda = text, novel, 2 / 3
    scores, _ = p(x)
    classes = torch.cat([F.normalize(p.background, dim=0)[None], text])
    pt = (p.embed(x) @ classes.T / 0.1).softmax(-1)
    pi = (p.embed(x, "image") @ text.T / 0.1).softmax(-1)
    want = torch.empty(5, 4)
    for k in range(4):
        a = (1 - 2 / 3) if novel[k] else 2 / 3
        want[:, k] = pt[:, k + 1] ** a * pi[:, k] ** (1 - a)
    torch.testing.assert_close(scores, torch.cat([pt[:, :1], want], 1))  # ViLD's blend, as it is
    assert p.class_scores(scores) is scores
    p.train()  # training: plain ViLD-text logits
    torch.testing.assert_close(p(x)[0], p.embed(x) @ classes.T / 0.1)


def test_ensemble_ranking_uses_the_blend_not_a_per_box_renormalisation():
    """The issue's example: box A (p_bg 0, blend 0.30) and box B (p_bg 0.6, blend 0.35). Renormalising would
    score A 0.75 and B 0.37 and flip them; ViLD ranks B first with its blend 0.35."""
    det = tiny_detector(image_head=True).eval()
    rh, pred = det.roi_heads, det.predictor
    pred.text, pred.novel_mask, pred.ensemble_lambda = F.normalize(torch.randn(1, D), dim=-1), torch.tensor([True]), 2 / 3
    scores = torch.tensor([[0.0, 0.30], [0.6, 0.35]])
    proposals = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 50.0, 50.0]])]
    boxes, got, labels = rh.postprocess_detections(scores, torch.zeros(2, 8), proposals, [(64, 64)])
    assert got[0].tolist() == pytest.approx([0.35, 0.30]) and boxes[0][0].tolist() == [30.0, 30.0, 50.0, 50.0]
    pred.ensemble_lambda = None  # without ensembling the output is logits and torchvision soft-maxes them
    _, plain, _ = rh.postprocess_detections(scores, torch.zeros(2, 8), proposals, [(64, 64)])
    torch.testing.assert_close(sorted(plain[0].tolist(), reverse=True), sorted(scores.softmax(-1)[:, 1].tolist(), reverse=True))


def test_separate_image_branch_has_its_own_head_layers():
    det = tiny_detector(image_head=True)
    assert isinstance(det.roi_heads.box_head, DualBranchHead) and det.predictor.image_head == "separate"
    x = torch.randn(3, 16, 7, 7)
    feats = det.roi_heads.box_head(x)
    text_before, image_before = det.predictor.embed(feats), det.predictor.embed(feats, "image")
    with torch.no_grad():
        for prm in det.roi_heads.box_head.image.parameters():
            prm.add_(0.5)
    feats = det.roi_heads.box_head(x)
    torch.testing.assert_close(det.predictor.embed(feats), text_before)          # text branch untouched
    assert not torch.allclose(det.predictor.embed(feats, "image"), image_before)  # image branch moved
    light = tiny_detector(image_head=True, image_branch="projection")
    assert not isinstance(light.roi_heads.box_head, DualBranchHead) and light.predictor.image_head == "projection"


def test_detector_losses_and_vocabulary_at_call_time():
    det = tiny_detector()
    text = F.normalize(torch.randn(3, D), dim=-1)
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 4, 30, 30]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    det.train()
    torch.manual_seed(3)
    plain = det(images, targets, text=text)
    torch.manual_seed(3)
    losses, emb = det.forward_with_regions(images, targets, text, [torch.tensor([[0.0, 0, 64, 64], [8, 8, 40, 40]]), torch.zeros(0, 4)])
    for k in plain:  # one backbone pass serves both: the detector losses are unchanged
        torch.testing.assert_close(losses[k], plain[k])
    assert emb.shape == (2, D)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    det.eval()
    out = det(images, text=torch.cat([text, F.normalize(torch.randn(4, D), dim=-1)]))
    assert all(((o["labels"] >= 1) & (o["labels"] <= 7)).all() for o in out)
    assert det.predictor.text is None  # the vocabulary does not leak past the call
    with pytest.raises(ValueError, match=r"\[K, 24\]"):
        det(images, text=torch.randn(3, 5))
    boxes, scores = det.propose(images)
    assert len(boxes) == 2 and all(((s >= 0) & (s <= 1)).all() for s in scores)


@pytest.mark.parametrize("image_head", [False, True])
def test_refine_boxes_applies_the_class_agnostic_regression_in_input_pixels(image_head):
    det = tiny_detector(image_head=image_head).eval()
    images = [torch.rand(3, 48, 48)]  # the transform resizes to 64: boxes go there and back
    boxes = [torch.tensor([[4.0, 6, 20, 30], [10, 10, 34, 22]])]
    pred = det.predictor.bbox_pred
    with torch.no_grad():
        pred.weight.zero_()
        pred.bias.zero_()
        torch.testing.assert_close(det.refine_boxes(images, boxes)[0], boxes[0], atol=1e-4, rtol=0)
        # torchvision's coder weights (10, 10, 5, 5): dx = 0.1 moves the centre by a tenth of the width, dw = ln 2 doubles it
        pred.bias.copy_(torch.tensor([1.0, 0.0, 5 * math.log(2), 0.0]))
        moved = det.refine_boxes(images, boxes)[0]
    w = boxes[0][:, 2] - boxes[0][:, 0]
    cx = (boxes[0][:, 0] + boxes[0][:, 2]) / 2 + 0.1 * w
    expected = torch.stack([cx - w, boxes[0][:, 1], cx + w, boxes[0][:, 3]], 1).clamp(0, 48)
    torch.testing.assert_close(moved, expected, atol=1e-3, rtol=0)


def test_region_embedding_does_not_depend_on_other_boxes():
    det = tiny_detector().eval()
    text = F.normalize(torch.randn(3, D), dim=-1)
    images = [torch.rand(3, 64, 64)]
    tg = [{"boxes": torch.tensor([[4.0, 4, 30, 30]]), "labels": torch.tensor([1])}]
    a = torch.tensor([[2.0, 3, 40, 50]])
    _, one = det.forward_with_regions(images, tg, text, [a])
    _, two = det.forward_with_regions(images, tg, text, [torch.cat([torch.tensor([[10.0, 10, 20, 20]]), a])])
    torch.testing.assert_close(one[0], two[1])


def test_backbone_weights_and_errors(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    bb = build_backbone("resnet18", str(tmp_path / "r18.pt"))
    torch.testing.assert_close(bb.body.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert not bb.body.conv1.weight.requires_grad and bb.body.layer4[0].conv1.weight.requires_grad  # trainable_layers=3
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'"):
        build_backbone("resnet7")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_backbone("resnet18", str(tmp_path / "nope.pt"))
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit"):
        build_backbone("resnet18", str(tmp_path / "bad.pt"))


def test_world_detection_data_drops_novel_from_training_only(tiny_world):
    dm = WorldDetDataModule(str(tiny_world))
    split = json.loads((tiny_world / "split.json").read_text())
    assert dm.class_names == split["classes"] and dm.novel == split["novel"]
    novel_ids = {dm.class_names.index(c) for c in dm.novel}
    train, test = dm.dataset("train"), dm.dataset("test")
    assert all(not set(train.target(i)["labels"].tolist()) & novel_ids for i in train.ids)
    assert any(set(test.target(i)["labels"].tolist()) & novel_ids for i in test.ids)
    image, target = test[0]
    coco = json.loads((tiny_world / "annotations/instances_test.json").read_text())
    anns = [a for a in coco["annotations"] if a["image_id"] == target["image_id"]]
    want = sorted([a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns)
    torch.testing.assert_close(torch.tensor(sorted(target["boxes"].tolist())), torch.tensor(want))
    assert image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1


def _coco_dir(tiny_world, tmp_path, edit):
    root = tmp_path / "coco"
    shutil.copytree(tiny_world / "images", root / "images")
    data = json.loads((tiny_world / "annotations/instances_val.json").read_text())
    edit(data)
    (root / "ann.json").write_text(json.dumps(data))
    return root


def test_coco_bad_input_names_the_problem(tiny_world, tmp_path):
    def unknown_cat(d):
        d["annotations"][0]["category_id"] = 99

    def flat_box(d):
        d["annotations"][1]["bbox"][3] = 0

    root = _coco_dir(tiny_world, tmp_path, unknown_cat)
    with pytest.raises(ValueError, match="unknown category_id 99"):
        CocoDetection(root, root / "ann.json")
    root = _coco_dir(tiny_world, tmp_path / "b", flat_box)
    with pytest.raises(ValueError, match=r"1 annotations have a box of zero width or height, first: annotation \d+ .* height 0"):
        CocoDetection(root, root / "ann.json", degenerate="error")
    flat = CocoDetection(root, root / "ann.json")  # real COCO has such boxes: dropped, counted in the log
    flat_id = json.loads((root / "ann.json").read_text())["annotations"][1]["image_id"]
    kept = CocoDetection(root, root / "ann.json", degenerate="drop").coco.imgToAnns[flat_id]
    assert len(flat.target(flat_id)["boxes"]) == len(kept) - 1
    root = _coco_dir(tiny_world, tmp_path / "c", lambda d: None)
    with pytest.raises(ValueError, match=r"\['zebra'\] are not categories"):
        CocoDetection(root, root / "ann.json", ["circle", "zebra"])
    ds = CocoDetection(root, root / "ann.json")
    name = ds.coco.imgs[ds.ids[0]]["file_name"]
    (root / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.split("/")[-1]):
        ds[0]
    (root / name).write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        ds[0]
    with pytest.raises(ValueError, match="proposals do not match"):
        CocoDetection(root, root / "ann.json", extras={"proposals": {ds.ids[0]: torch.zeros(0, 4)}})
    with pytest.raises(ValueError, match="ov_coco split names classes absent"):
        split_classes("ov_coco", root / "ann.json")


def test_empty_images_kept_and_crowd_only_in_evaluation(tiny_world, tmp_path):
    def edit(d):
        first = d["images"][0]["id"]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != first]
        d["annotations"][0]["iscrowd"] = 1

    root = _coco_dir(tiny_world, tmp_path, edit)
    data = json.loads((root / "ann.json").read_text())
    crowd_image = data["annotations"][0]["image_id"]
    train = CocoDetection(root, root / "ann.json", train=True)
    evaluation = CocoDetection(root, root / "ann.json")
    assert len(train) == len(data["images"])
    assert len(train.target(data["images"][0]["id"])["boxes"]) == 0
    assert len(evaluation.target(crowd_image)["boxes"]) == len(train.target(crowd_image)["boxes"]) + 1
    assert evaluation.target(crowd_image)["iscrowd"].sum() == 1


def test_ov_coco_split_reference_lists(tmp_path):
    assert len(OV_COCO_BASE) == 48 and len(OV_COCO_NOVEL) == 17 and not set(OV_COCO_BASE) & set(OV_COCO_NOVEL)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(list(OV_COCO_NOVEL) + list(OV_COCO_BASE) + ["hair drier"])]
    (tmp_path / "a.json").write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    names, novel = split_classes("ov_coco", tmp_path / "a.json")
    assert len(names) == 65 and "hair drier" not in names and novel == list(OV_COCO_NOVEL)
    lvis = [{"id": 3, "name": "a", "frequency": "r"}, {"id": 1, "name": "b", "frequency": "f"}, {"id": 2, "name": "c", "frequency": "c"}]
    (tmp_path / "l.json").write_text(json.dumps({"images": [], "annotations": [], "categories": lvis}))
    assert split_classes("lvis", tmp_path / "l.json") == (["b", "c", "a"], ["a"])
    dm = CocoDetDataModule(str(tmp_path), "l.json", "l.json", split="lvis")
    assert dm.base == ["b", "c"]
    with pytest.raises(ValueError, match="held-out classes \\['z'\\]"):
        CocoDetDataModule(str(tmp_path), "l.json", "l.json", class_names=["a", "b"], novel=["z"])


def test_proposals_round_trip_and_teacher_regions(tiny_world, teacher, tmp_path):
    det = tiny_detector()
    ds = WorldDetDataModule(str(tiny_world)).dataset("train")
    props = compute_proposals(det, ds, top_n=5, teacher=teacher, batch_size=4)
    path = save_proposals(props, tmp_path / "p.pt")
    loaded = load_proposals(path)
    assert sorted(loaded["proposals"]) == sorted(ds.ids)
    i = ds.ids[2]
    boxes = loaded["proposals"][i]
    assert 0 < len(boxes) <= 5
    image, _ = ds[2]
    want = teacher.encode_regions(image[None], [boxes])
    torch.testing.assert_close(loaded["teacher_regions"][i], want, atol=2e-3, rtol=0)  # stored as fp16
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read proposals file .*junk.pt"):
        load_proposals(tmp_path / "junk.pt")


def test_teacher_pseudo_boxes_are_refined_proposals(tiny_world, teacher):
    from pipelines.offline.pseudo_labels import teacher_pseudo_labels

    det = tiny_detector().eval()
    dm = WorldDetDataModule(str(tiny_world))
    ds = dm.dataset("train")
    coco = teacher_pseudo_labels(teacher, det, ds, dm.class_names, dm.novel, score_threshold=0.0, gold_iou=1.1, top_proposals=5)
    assert coco["info"]["ovdistill"]["refine"] is True and coco["annotations"]
    for image_id in {a["image_id"] for a in coco["annotations"]}:
        image, _ = ds[ds.ids.index(image_id)]
        raw = det.propose([image])[0][0][:5]
        refined = det.refine_boxes([image], [raw])[0]
        for a in (a for a in coco["annotations"] if a["image_id"] == image_id):
            x, y, w, h = a["bbox"]
            box = torch.tensor([[x, y, x + w, y + h]])
            assert box_iou(box, refined).max() > 0.999  # every pseudo box is a moved proposal
    with pytest.raises(ValueError, match="stored proposals table"):
        teacher_pseudo_labels(teacher, det, ds, dm.class_names, dm.novel, proposals={"proposals": {}}, refine=True)


def test_one_proposer_pass_gives_what_the_two_steps_give_apart(tiny_world, teacher):
    """The demo's shared pass: the stored proposals and the round-one pseudo labels equal those of
    ``compute_proposals`` and ``teacher_pseudo_labels`` run apart, and the proposer runs once per batch."""
    from pipelines.offline.pseudo_labels import teacher_pseudo_labels
    from pipelines.offline.round_one import proposals_and_pseudo_labels

    det = tiny_detector().eval()
    dm = WorldDetDataModule(str(tiny_world))
    ds = dm.dataset("train")
    ds.flip = False
    labeller = {"score_threshold": 0.0, "gold_iou": 1.1, "refine": True}
    props = compute_proposals(det, ds, top_n=5, teacher=teacher, batch_size=4)
    coco = teacher_pseudo_labels(teacher, det, ds, dm.class_names, dm.novel, top_proposals=5, batch_size=4, **labeller)
    calls = []
    original = det.propose
    det.propose = lambda *a, **k: calls.append(1) or original(*a, **k)
    shared_props, shared_coco = proposals_and_pseudo_labels(det, teacher, ds, dm.class_names, dm.novel, 5, batch_size=4, **labeller)
    assert len(calls) == math.ceil(len(ds) / 4)
    assert coco["annotations"] and shared_coco == coco
    assert shared_props.keys() == props.keys()
    for key, value in props.items():
        assert torch.equal(shared_props[key], value) if torch.is_tensor(value) else shared_props[key] == value, key


def test_the_labeller_refines_from_the_proposals_backbone_pass(tiny_world, teacher):
    """Round one runs the detector's backbone once per batch: the box regression reuses the proposals' features,
    and the moved boxes equal those of a fresh pass."""
    from pipelines.offline.pseudo_labels import teacher_label_batch, teacher_settings

    det = tiny_detector().eval()
    dm = WorldDetDataModule(str(tiny_world))
    ds = dm.dataset("train")
    items = [ds[i] for i in range(3)]
    images, targets = [i for i, _ in items], [t for _, t in items]
    boxes, _, passed = det.propose(images, keep_features=True)
    boxes = [b[:6] for b in boxes]
    for shared, fresh in zip(det.refine_boxes(images, boxes, features=passed), det.refine_boxes(images, boxes), strict=True):
        assert torch.equal(shared, fresh)
    calls = []
    hook = det.backbone.register_forward_hook(lambda *_: calls.append(1))
    try:
        text = teacher.encode_text(dm.class_names, "simple")
        novel = [dm.class_names.index(c) for c in dm.novel]
        teacher_label_batch(teacher, det, text, novel, ds, images, targets, teacher_settings(0.0, gold_iou=1.1, top_proposals=6, refine=True))
    finally:
        hook.remove()
    assert len(calls) == 1


def test_teacher_labeller_skips_only_boxes_that_cannot_pass(tiny_world, teacher):
    """Proposals whose objectness is below the threshold are not embedded; the labels equal an unfiltered pass's."""
    from distill.pseudo_boxes import teacher_box_scores
    from pipelines.offline.pseudo_labels import teacher_label_batch, teacher_settings

    det = tiny_detector().eval()
    dm = WorldDetDataModule(str(tiny_world))
    ds = dm.dataset("train")
    items = [ds[i] for i in range(4)]
    images, targets = [i for i, _ in items], [t for _, t in items]
    text = teacher.encode_text(dm.class_names, "simple")
    novel = [dm.class_names.index(c) for c in dm.novel]
    boxes, objectness = det.propose(images)
    boxes, objectness = [b[:8] for b in boxes], [o[:8] for o in objectness]
    threshold = float(torch.cat(objectness).median())
    got = teacher_label_batch(teacher, det, text, novel, ds, images, targets, teacher_settings(threshold, gold_iou=1.1, top_proposals=8, refine=True))
    assert any(len(g["boxes"]) for g in got)
    refined = det.refine_boxes(images, boxes)
    for g, b, o, image in zip(got, refined, objectness, images, strict=True):
        scores, labels = teacher_box_scores(teacher.encode_regions(image[None], [b]), text, o)
        want = select_pseudo_boxes(b, scores, labels, novel, None, threshold, 5, 0.5, 1.1)
        torch.testing.assert_close(g["boxes"], want[0], atol=1e-3, rtol=0)
        assert g["labels"].tolist() == want[2].tolist()
    assert not any(len(g["boxes"]) for g in teacher_label_batch(teacher, det, text, novel, ds, images, targets,
                                                              teacher_settings(1.01, top_proposals=8, refine=True)))
    with torch.no_grad():  # a regression that moves every box off the image: nothing to label, no error
        det.predictor.bbox_pred.weight.zero_()
        det.predictor.bbox_pred.bias.copy_(torch.tensor([1000.0, 0.0, 0.0, 0.0]))
    off = teacher_label_batch(teacher, det, text, novel, ds, images, targets, teacher_settings(0.0, gold_iou=1.1, top_proposals=8, refine=True))
    assert not any(len(g["boxes"]) for g in off)


def test_select_pseudo_boxes_rules():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40], [50, 50, 60, 60], [0, 30, 10, 40]])
    scores = torch.tensor([0.9, 0.8, 0.95, 0.3, 0.7])
    labels = torch.tensor([2, 2, 1, 2, 2])
    gold = torch.tensor([[0.0, 30, 10, 40]])
    b, s, lab = select_pseudo_boxes(boxes, scores, labels, [2], gold, score_threshold=0.5, top_k=5, nms_iou=0.5)
    # box 1 suppressed by box 0 (NMS), box 2 is a base class, box 3 below threshold, box 4 is a gold box
    assert b.tolist() == [[0.0, 0, 10, 10]] and lab.tolist() == [2] and s.tolist() == pytest.approx([0.9])


def test_pseudo_labels_file_round_trip_and_errors(tmp_path):
    vocab = Vocabulary(("circle", "star"), ("star",))
    images = {1: {"id": 1, "width": 40, "height": 30}, 2: {"id": 2, "width": 40, "height": 30}}

    def write(anns, cats=({"id": 4, "name": "star"},)):
        coco = {"images": list(images.values()), "categories": list(cats), "annotations": anns}
        (tmp_path / "p.json").write_text(json.dumps(coco))
        return tmp_path / "p.json"

    ok = {"id": 1, "image_id": 2, "category_id": 4, "bbox": [1, 2, 3, 4], "score": 0.9}
    got = load_pseudo_labels(write([ok]), vocab, images)
    assert got[2][0].tolist() == [[1, 2, 4, 6]] and got[2][1].tolist() == [1]
    with pytest.raises(ValueError, match="image_id 2"):
        load_pseudo_labels(write([ok]), vocab, {1: images[1]})
    with pytest.raises(ValueError, match="'star'"):
        load_pseudo_labels(write([ok]), Vocabulary(("circle", "square"), ("square",)), images)
    with pytest.raises(ValueError, match="labelled 'circle', a base class"):
        load_pseudo_labels(write([{**ok, "category_id": 1}], [{"id": 1, "name": "circle"}]), vocab, images)
    with pytest.raises(ValueError, match=r"lies outside image 2 of size 40x30"):
        load_pseudo_labels(write([{**ok, "bbox": [30, 2, 20, 4]}]), vocab, images)
    with pytest.raises(ValueError, match="not valid JSON"):
        (tmp_path / "p.json").write_text('{"images": [')
        load_pseudo_labels(tmp_path / "p.json", vocab, images)


def test_modules_map_labels_and_check_dimensions(teacher):
    names = ["a", "b", "c", "d"]
    m = ViLD(teacher, tiny_detector(), class_names=names, novel=["b", "d"])
    assert m.base_ids == [0, 2] and m.novel_ids == [1, 3]
    t = [{"boxes": torch.zeros(2, 4), "labels": torch.tensor([2, 0]), "image_id": 7}]
    assert m.train_targets(t)[0]["labels"].tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"image 7: .*\['b'\]"):
        m.train_targets([{**t[0], "labels": torch.tensor([1])}])
    p = PseudoBoxDetector(teacher, tiny_detector(), class_names=names, novel=["b", "d"])
    assert p.train_targets([{**t[0], "labels": torch.tensor([1, 3])}])[0]["labels"].tolist() == [2, 4]
    with pytest.raises(ValueError, match="embed_dim=16 but teacher"):
        BaseOnlyDetector(teacher, RegionEmbeddingDetector(16, "resnet18", fpn_channels=8, representation_size=8), class_names=names)
    with pytest.raises(ValueError, match="held-out classes \\['x'\\]"):
        ViLD(teacher, tiny_detector(), class_names=names, novel=["x"])
    with pytest.raises(ValueError, match="image_head=True"):
        ViLD(teacher, tiny_detector(), class_names=names, novel=["b"], image_weight=1.0, ensemble=True)


def test_detector_pseudo_labels_round_two(tiny_world, tmp_path):
    """A trained detector as labeller: only novel classes, gold base boxes respected, a valid COCO JSON."""
    from pipelines.offline.pseudo_labels import detector_pseudo_labels, save_pseudo_labels

    ds = WorldDetDataModule(str(tiny_world)).dataset("train")
    names = ds.class_names
    novel = ["star", "heart"]

    class Labeller:
        class_names, novel_names = names, novel
        novel_ids = [names.index(c) for c in novel]
        device = torch.device("cpu")

        def eval(self):
            return self

        def detect(self, images):
            box = torch.tensor([[1.0, 1, 20, 20], [30, 30, 50, 50], [2, 2, 21, 21]])
            return [{"boxes": box, "scores": torch.tensor([0.9, 0.8, 0.7]),
                     "labels": torch.tensor([names.index("star"), names.index("circle"), names.index("heart")])} for _ in images]

    coco = detector_pseudo_labels(Labeller(), ds, score_threshold=0.5, top_k=5)
    path = save_pseudo_labels(coco, tmp_path / "round2.json")
    assert {c["name"] for c in coco["categories"]} == set(novel)
    gt_ids = {c["name"]: c["id"] for c in ds.coco.dataset["categories"]}
    assert {c["id"] for c in coco["categories"]} == {gt_ids[c] for c in novel}  # the ground truth's own ids
    assert coco["info"]["ovdistill"]["round"] == 2
    id_to_name = {c["id"]: c["name"] for c in coco["categories"]}
    for image_id in ds.ids:
        anns = [a for a in coco["annotations"] if a["image_id"] == image_id]
        gold = ds.target(image_id)["boxes"]
        want = []
        for box, cls in (([1.0, 1, 20, 20], "star"), ([2.0, 2, 21, 21], "heart")):  # circle is a base class
            if not len(gold) or float(box_iou(torch.tensor([box]), gold).max()) < 0.5:  # gold base boxes win
                want.append(cls)
        assert [id_to_name[a["category_id"]] for a in anns] == want
    vocab = WorldDetDataModule(str(tiny_world)).vocabulary
    loaded = load_pseudo_labels(path, vocab, ds.coco.imgs)
    assert sum(len(v[1]) for v in loaded.values()) == len(coco["annotations"])
    # round 3 on a training set that holds round 2's boxes: those are not gold, so they are found again
    ds.pseudo = loaded
    again = detector_pseudo_labels(Labeller(), ds, score_threshold=0.5, top_k=5, round_=3)
    assert len(again["annotations"]) == len(coco["annotations"]) > 0
