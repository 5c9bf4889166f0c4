"""The contract every method module in ``distill/`` keeps (the way timm tests every registered model):

- trained on a dataset whose **training files still hold held-out labels** (the world's fully labelled test
  split used as training data), no held-out label reaches a loss — checked on what the loss received;
- fit 2 steps -> checkpoint without teacher weights -> strict reload into a fresh module -> the same test
  metrics as the trained module.
"""
from __future__ import annotations

import inspect
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RN, make_teacher, tiny_segmenter
from lightning.pytorch.callbacks import ModelCheckpoint

import distill.det_modules as det_modules
import distill.seg_modules as seg_modules
from pipelines.data.det_datamodule import CocoDetDataModule
from pipelines.data.seg_datamodule import SegFolderDataModule
from students import RegionEmbeddingDetector

D = 24
NOVEL = ["star", "heart", "ring"]


def _all_modules() -> list[type]:
    found = []
    for mod in (seg_modules, det_modules):
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, L.LightningModule) and cls.__module__ == mod.__name__ and not cls.__name__.startswith("OpenVocab"):
                found.append(cls)
    return found


SEG = ["LSeg", "LSegDenseDistill", "LSegDenseDistill-ensemble", "MaskCLIP", "MaskCLIPPlus"]
DET = ["ViLD", "ViLD-image", "ViLD-ensemble", "PseudoBoxDetector", "BaseOnlyDetector", "TeacherOnProposals"]


def test_every_module_is_covered():
    names = {c.__name__ for c in _all_modules()}
    assert names == {m for m in SEG + DET if "-" not in m}, names


@pytest.fixture(scope="module")
def teacher():
    return make_teacher("contract-rn", TINY_RN)


@pytest.fixture(scope="module")
def pseudo_file(tiny_world, tmp_path_factory):
    """A round of pseudo boxes for the novel classes (what `ovdistill pseudo-label` writes)."""
    import json

    gt = json.loads((tiny_world / "annotations/instances_test.json").read_text())
    cats = [c for c in gt["categories"] if c["name"] in NOVEL]
    anns = [{"id": i + 1, "image_id": im["id"], "category_id": cats[i % len(cats)]["id"], "bbox": [2, 3, 20, 18], "area": 360,
             "iscrowd": 0, "score": 0.9} for i, im in enumerate(gt["images"])]
    path = tmp_path_factory.mktemp("pseudo") / "pseudo.json"
    path.write_text(json.dumps({"images": gt["images"], "annotations": anns, "categories": cats}))
    return path


def _seg_dm(world):
    """Training on the world's **test** split, whose label PNGs still hold the novel classes."""
    import json

    classes = json.loads((world / "split.json").read_text())["classes"]
    splits = {"train": ["images/test", "labels/test"], "val": ["images/val", "labels/val"], "test": ["images/val", "labels/val"]}
    return SegFolderDataModule(str(world), class_names=["background", *classes], unseen=NOVEL, splits=splits, batch_size=4,
                               eval_batch_size=8, num_workers=0)


def _det_dm(world, **extra):
    return CocoDetDataModule(
        str(world), "annotations/instances_test.json", "annotations/instances_val.json",
        novel=NOVEL, batch_size=4, eval_batch_size=8, num_workers=0, **extra,
    )


def _detector(seed=0, **kw):
    torch.manual_seed(seed)
    return RegionEmbeddingDetector(
        D, "resnet18", fpn_channels=16, representation_size=32, anchor_sizes=[8, 16, 32, 64, 128], min_size=64, max_size=64,
        rpn_pre_nms_top_n_train=50, rpn_post_nms_top_n_train=20, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
        box_batch_size_per_image=16, box_score_thresh=0.0, tau=0.05, **kw,
    )


def _build(name, teacher, world, tmp_path, pseudo_file):
    """(fresh module factory, datamodule, ids of held-out classes)."""
    if name in SEG:
        dm = _seg_dm(world)
        cls = getattr(seg_modules, name.split("-")[0])
        extra = {"teacher_size": (64, 64)}
        ens = name.endswith("-ensemble")  # the distillation trains a second head
        if ens:
            extra["ensemble"] = True
        if name == "MaskCLIPPlus":
            extra["self_train_after"] = 1.0  # keep the teacher phase for both steps
        if name == "MaskCLIP":
            return (lambda: cls(teacher, **extra)), dm
        return (lambda: cls(teacher, tiny_segmenter(D, image_head=ens), lr=1e-3, **extra)), dm
    vocab = dict(class_names=None, novel=None)
    if name in ("ViLD-image", "ViLD-ensemble"):
        from pipelines.data.proposals_file import save_proposals
        from pipelines.offline.proposals import compute_proposals

        train = _det_dm(world).dataset("train")
        train.flip = False
        props = save_proposals(compute_proposals(_detector(7), train, 8, teacher), tmp_path / "props.pt")
        dm = _det_dm(world, proposals=str(props))
        ens = name == "ViLD-ensemble"
        return (lambda: det_modules.ViLD(teacher, _detector(image_head=ens), image_weight=0.5, image_regions=8, ensemble=ens)), dm
    if name == "PseudoBoxDetector":
        dm = _det_dm(world, pseudo_labels=str(pseudo_file))
        return (lambda: det_modules.PseudoBoxDetector(teacher, _detector())), dm
    dm = _det_dm(world)
    if name == "BaseOnlyDetector":
        vocab = dict(class_names=dm.class_names, novel=dm.novel)
        return (lambda: det_modules.BaseOnlyDetector(teacher, _detector(), **vocab)), dm
    if name == "TeacherOnProposals":
        return (lambda: det_modules.TeacherOnProposals(teacher, _detector())), dm
    return (lambda: det_modules.ViLD(teacher, _detector())), dm


class LossSpy:
    """Records what reaches the losses: segmentation cross-entropy targets, detection training targets."""

    def __init__(self, monkeypatch, module):
        self.seg_targets, self.det_targets, self.batches = [], [], []
        real_ce = F.cross_entropy

        def ce(input, target, *a, **k):
            self.seg_targets.append(target.detach().clone())
            return real_ce(input, target, *a, **k)

        monkeypatch.setattr(F, "cross_entropy", ce)
        student = getattr(module, "student", None)
        if isinstance(student, RegionEmbeddingDetector):
            real_forward, real_regions = student.forward, student.forward_with_regions

            def forward(images, targets=None, **kw):
                if targets is not None:
                    self.det_targets.append([{k: v.clone() for k, v in t.items()} for t in targets])
                return real_forward(images, targets, **kw)

            def with_regions(images, targets, *a, **kw):
                self.det_targets.append([{k: v.clone() for k, v in t.items()} for t in targets])
                return real_regions(images, targets, *a, **kw)

            monkeypatch.setattr(student, "forward", forward)
            monkeypatch.setattr(student, "forward_with_regions", with_regions)
        real_step = module.training_step

        def step(batch, batch_idx):
            self.batches.append(batch)
            return real_step(batch, batch_idx)

        monkeypatch.setattr(module, "training_step", step)


def _trainer(tmp_path, steps):
    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
    )


def _check_no_held_out(name, module, spy, dm, pseudo_file):
    assert spy.batches, "training_step never ran"
    if name in SEG:
        for batch in spy.batches:
            assert not module.vocabulary.held_out_mask(batch["label"]).any(), "a held-out label reached training_step"
        assert spy.seg_targets, "no loss was computed"
        for target in spy.seg_targets:
            if name == "MaskCLIPPlus":  # target space = all classes; unseen ids only from the teacher's pseudo labels
                assert set(target.unique().tolist()) - {255} <= set(range(len(module.class_names)))
                forced = module.class_names.index("ring")
                unseen_here = set(target[module.vocabulary.held_out_mask(target)].unique().tolist())
                assert unseen_here <= {forced}, f"true held-out labels {unseen_here - {forced}} reached the loss"
            else:  # target space = seen classes
                valid = target[target != 255]
                assert not len(valid) or int(valid.max()) < len(module.seen_ids)
        return
    assert spy.det_targets, "the detector received no training targets"
    train_classes = module.train_classes()
    for batch, targets in zip(spy.batches, spy.det_targets, strict=True):
        for t_in, t_loss in zip(batch[1], targets, strict=True):
            names = [module.class_names[train_classes[i - 1]] for i in t_loss["labels"].tolist()]
            if name == "PseudoBoxDetector":  # novel boxes only from the pseudo-label file, never gold ones
                novel_boxes = t_loss["boxes"][[n in NOVEL for n in names]]
                pb = dm.dataset("train").pseudo.get(int(t_in["image_id"]))
                assert len(novel_boxes) == (0 if pb is None else len(pb[0]))
            else:
                assert not set(names) & set(NOVEL), f"held-out boxes {names} reached the detector loss"


@pytest.mark.parametrize("name", SEG + DET)
def test_method_contract(name, teacher, tiny_world, tmp_path, monkeypatch, pseudo_file):
    warnings.filterwarnings("ignore")
    make, dm = _build(name, teacher, tiny_world, tmp_path, pseudo_file)
    module = make()
    trainable = name not in ("MaskCLIP", "TeacherOnProposals")  # training-free baselines
    L.seed_everything(0)
    if trainable:
        if name == "MaskCLIPPlus":  # a teacher that always names one unseen class: true unseen labels are then visible

            def teacher_logits(images, text):
                logits = torch.zeros(images.shape[0], len(text), *images.shape[-2:])
                logits[:, module.class_names.index("ring")] = 10.0
                return logits

            monkeypatch.setattr(module, "teacher_logits", teacher_logits)
        spy = LossSpy(monkeypatch, module)
        trainer = _trainer(tmp_path, 2)
        trainer.fit(module, dm)
        _check_no_held_out(name, module, spy, dm, pseudo_file)
        monkeypatch.undo()
        ckpt = tmp_path / "ckpt" / "last.ckpt"
    else:
        trainer = _trainer(tmp_path, 0)
        trainer.test(module, dm, verbose=False)
        ckpt = tmp_path / "manual.ckpt"
        trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert not [k for k in state["state_dict"] if k.startswith("teacher.")], "the checkpoint holds teacher weights"
    assert state["vocabulary"]["held_out"] == NOVEL and state["ovdistill"]["teacher"] == teacher.name

    tester = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    want = tester.test(module, dm, verbose=False)[0]
    fresh = make()  # new student weights: only a strict, complete load can reproduce the metrics
    got = tester.test(fresh, dm, ckpt_path=str(ckpt), verbose=False)[0]
    assert got == pytest.approx(want, nan_ok=True), (got, want)
    if trainable:
        before = {k: v.clone() for k, v in make().state_dict().items() if not k.startswith("teacher.")}
        changed = [k for k, v in fresh.state_dict().items() if k in before and not torch.equal(v, before[k])]
        assert changed, "loading the checkpoint changed no weight"
