"""Learned prompts: the context hook reproduces the template it was initialised from, only the context learns,
class order does not matter, prompt files round-trip and are tied to their teacher, methods read them, and
prompt tuning runs under 2-process DDP with the synced accuracy of one process."""
from __future__ import annotations

import os
import warnings

import lightning as L
import pytest
import torch
from conftest import TINY_RN, TINY_VIT, make_teacher
from ddp_harness import launch, validate_checkpoint

from distill.prompt_modules import PromptTuning, sample_boxes
from distill.seg_modules import LSeg
from pipelines.data.det_datamodule import WorldDetDataModule
from teachers.prompts import PromptLearner, text_embeddings

NAMES = ["circle", "square", "star"]


@pytest.fixture(scope="module")
def teacher():
    return make_teacher("prompt-rn", TINY_RN)


@pytest.mark.parametrize("kind", ["clip-rn", "clip-vit", "custom-text"])
def test_context_initialised_from_a_phrase_is_that_template(kind):
    """Through the CLIP text transformer (CLIP class) and a CustomTextCLIP text tower alike."""
    cfg = {"clip-rn": TINY_RN, "clip-vit": TINY_VIT, "custom-text": {**TINY_RN, "custom_text": True}}[kind]
    t = make_teacher(f"prompt-init-{kind}", cfg)
    learner = PromptLearner(t, init="a photo of a")
    assert learner.n_ctx == 4
    assert torch.allclose(learner(NAMES), t.encode_text(NAMES, ["a photo of a {}."]), atol=1e-5)
    # the class token in the middle: "a photo {name} of a."
    middle = PromptLearner(t, init="a photo of a", position="middle")
    assert torch.allclose(middle(NAMES), t.encode_text(NAMES, ["a photo {} of a."]), atol=1e-5)


def test_only_the_context_receives_gradients_and_order_does_not_matter(teacher):
    learner = PromptLearner(teacher, 4, seed=3)
    learner(NAMES).sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    with torch.no_grad():
        a, b = learner(NAMES), learner(NAMES[::-1])
        assert torch.allclose(a, b.flip(0), atol=1e-6)
        specific = PromptLearner(teacher, 4, class_specific=True, class_names=NAMES)
        specific.ctx.add_(torch.randn_like(specific.ctx))
        assert torch.allclose(specific(["star", "circle"]), specific(NAMES)[[2, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="heart"):
        specific(["heart"])


def test_prompt_file_round_trip_and_teacher_check(teacher, tmp_path):
    learner = PromptLearner(teacher, 4, seed=1)
    with torch.no_grad():
        learner.ctx.mul_(5)
    path = learner.save(tmp_path / "p.safetensors")
    loaded = PromptLearner.load(path, teacher)
    with torch.no_grad():
        assert torch.equal(loaded(NAMES), learner(NAMES))
        assert torch.equal(text_embeddings(teacher, NAMES, prompts=path), learner(NAMES))
    other = make_teacher("prompt-rn-other", TINY_RN, seed=1)
    with pytest.raises(ValueError, match=f"learned for teacher {teacher.name}, not {other.name}"):
        PromptLearner.load(path, other)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable prompt file"):
        PromptLearner.load(tmp_path / "bad.safetensors", teacher)
    # a method's class embeddings come from the file
    module = LSeg(teacher, None, class_names=["background", *NAMES], unseen=["star"], prompts=str(path))
    module.setup("test")
    with torch.no_grad():
        assert torch.allclose(module.text, learner(["background", *NAMES]), atol=1e-6)
        assert not torch.allclose(module.text, teacher.encode_text(["background", *NAMES]), atol=1e-3)


def test_sampled_boxes_stay_inside_the_image_and_cover_both_kinds():
    gt = torch.tensor([[10.0, 10.0, 30.0, 40.0]])
    boxes = sample_boxes(gt, (48, 64), 40, torch.Generator().manual_seed(0))
    assert (boxes[:, [0, 2]] <= 64).all() and (boxes[:, [1, 3]] <= 48).all() and (boxes >= 0).all()
    from torchvision.ops import box_iou

    iou = box_iou(boxes, gt).flatten()
    assert (iou >= 0.5).any() and (iou < 0.5).any()


@pytest.mark.parametrize("method", ["coop", "detpro"])
def test_prompt_tuning_learns_the_context_only(tiny_world, teacher, tmp_path, method):
    L.seed_everything(0, verbose=False)
    module = PromptTuning(teacher, method=method, n_ctx=4, lr=0.05, proposals_per_image=8)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    dm = WorldDetDataModule(str(tiny_world), batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, dm)
        start = module.prompt.ctx.detach().clone()
        result = trainer.validate(module, dm, verbose=False)[0]
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items()), "the teacher changed"
    assert not torch.equal(PromptTuning(teacher, method=method, n_ctx=4).prompt.ctx, start), "the context did not move"
    assert set(result) == {"val/acc_base", "val/acc_novel", "val/acc"} and 0 <= result["val/acc"] <= 100
    # the exported file embeds as the trained module does
    path = module.export(tmp_path / "p.safetensors")
    with torch.no_grad():
        assert torch.equal(PromptLearner.load(path, teacher)(module.class_names), module.prompt(module.class_names))


@pytest.mark.slow
def test_prompt_tuning_under_ddp_syncs_accuracy(tiny_world, tmp_path):
    from ddp_prompt_script import build

    result = launch(os.path.join(os.path.dirname(__file__), "ddp_prompt_script.py"), [str(tiny_world), str(tmp_path), "2"], tmp_path)
    single = validate_checkpoint(*build(str(tiny_world)), tmp_path)
    for key in ("val/acc", "val/acc_base", "val/acc_novel"):
        assert result["metrics"][key] == pytest.approx(single[key], abs=1e-6), key


@pytest.mark.parametrize("method", ["coop", "detpro"])
def test_held_out_boxes_never_reach_the_prompt_loss(tiny_world, teacher, tmp_path, method, monkeypatch):
    """Trained on the world's test split, whose annotation file still holds the novel boxes."""
    import torch.nn.functional as F

    from pipelines.data.det_datamodule import CocoDetDataModule

    novel = ["star", "heart", "ring"]
    dm = CocoDetDataModule(str(tiny_world), "annotations/instances_test.json", "annotations/instances_val.json", novel=novel,
                           batch_size=4, num_workers=0)
    module = PromptTuning(teacher, method=method, n_ctx=4, proposals_per_image=8)
    seen_labels, loss_targets = [], []
    real_step, real_ce, real_nll = module.training_step, F.cross_entropy, F.nll_loss

    def step(batch, batch_idx):
        seen_labels.extend(t["labels"] for t in batch[1])
        return real_step(batch, batch_idx)

    def spy(real):
        def fn(input, target, *a, **k):
            loss_targets.append((input.shape[-1], target.clone()))
            return real(input, target, *a, **k)
        return fn

    monkeypatch.setattr(module, "training_step", step)
    monkeypatch.setattr(F, "cross_entropy", spy(real_ce))
    monkeypatch.setattr(F, "nll_loss", spy(real_nll))
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, dm)
    novel_ids = set(module.vocabulary.held_out_ids)
    assert seen_labels and not set(torch.cat(seen_labels).tolist()) & novel_ids
    assert loss_targets, "no loss was computed"
    for width, target in loss_targets:  # the loss classifies over base classes only
        assert width == len(module.base_ids) and int(target.max()) < len(module.base_ids)


@pytest.mark.slow
def test_prompts_command_then_a_method_reads_the_file(tiny_world, tmp_path):
    """`ovdistill prompts` with the shipped world config writes a file that `ovdistill fit --model.init_args.prompts` uses."""
    from pipelines.cli import main
    from pipelines.world.teacher import EmbeddedTeacher

    out = tmp_path / "world.safetensors"
    quiet = ["--trainer.max_steps", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
             "--data.init_args.world", str(tiny_world)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["prompts", "-c", "configs/prompts/world.yaml", *quiet, "--trainer.default_root_dir", str(tmp_path / "p"),
                     "--data.init_args.batch_size", "4", "--out", str(out)]) == 0
        learner = PromptLearner.load(out, EmbeddedTeacher())
        main(["fit", "-c", "configs/seg/world.yaml", "-c", "configs/seg/method/lseg.yaml", *quiet, "--data.init_args.batch_size", "4",
              "--model.init_args.student.init_args.encoder_weights", "null", "--model.init_args.prompts", str(out),
              "--trainer.default_root_dir", str(tmp_path / "fit")])
        ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
        assert torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["prompts"] == str(out)
        # the method's class embeddings are the file's (as the fit above used them)
        from pipelines.cli import lightning_cli

        cli = lightning_cli(["-c", "configs/seg/world.yaml", "-c", "configs/seg/method/lseg.yaml", *quiet,
                             "--model.init_args.student.init_args.encoder_weights", "null", "--model.init_args.prompts", str(out)], run=False)
    cli.model._set_vocabulary(cli.datamodule.vocabulary)
    cli.model.setup("test")
    with torch.no_grad():
        assert torch.allclose(cli.model.text, learner(cli.model.class_names), atol=1e-6)
    assert learner.n_ctx == 8
