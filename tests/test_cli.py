"""The ``ovdistill`` entry point dispatches project commands and Lightning subcommands."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from config_combos import combos, config_args

from pipelines.cli import PROJECT_COMMANDS, main


def test_help_lists_every_project_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in PROJECT_COMMANDS:
        assert name in out
    assert "fit" in out


def _options_without_help(text: str) -> list[str]:
    """Options in an argparse ``--help`` text that have no help of their own: an option line with no text after its
    invocation, and no indented continuation below it."""
    lines = text.split("\n")
    bare = []
    for i, line in enumerate(lines):
        if re.match(r"^  -", line) and not line.startswith("  -h,"):
            helped = re.search(r"\S\s{2,}\S", line.strip()) is not None
            wrapped = i + 1 < len(lines) and re.match(r"^\s{8,}\S", lines[i + 1]) is not None
            if not (helped or wrapped):
                bare.append(line.strip())
    return bare


def test_the_heuristic_finds_an_option_without_help():
    import argparse

    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--with-help", type=int, help="says what it does")
    parser.add_argument("--bare-choice", choices=("a", "b"))
    parser.add_argument("--a-rather-long-option-name-that-wraps", help="the help goes on the next line")
    parser.add_argument("--bare", type=int)
    assert _options_without_help(parser.format_help()) == ["--bare-choice {a,b}", "--bare BARE"]


@pytest.mark.parametrize("command", [*PROJECT_COMMANDS, "evaluate det", "evaluate seg"])
def test_every_project_command_option_says_what_it_does(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "options:" in text
    assert _options_without_help(text) == []


def test_lightning_subcommand_help_is_lightning_cli(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert "--trainer.strategy" in capsys.readouterr().out


def test_every_config_file_is_in_a_tested_combination():
    from pathlib import Path

    used = {f for files in combos() for f in files}
    shipped = {str(p) for p in Path("configs").rglob("*.yaml")}
    assert shipped and shipped == used, f"not run by any test: {sorted(shipped - used)}; missing: {sorted(used - shipped)}"


@pytest.mark.parametrize("files", combos(), ids=lambda f: "+".join(Path(x).stem for x in f))
def test_every_composed_config_parses(files):
    """Each composition is a valid LightningCLI config (classes importable, arguments known, merged as documented)."""
    import io
    from contextlib import redirect_stdout

    import yaml

    buf = io.StringIO()
    with redirect_stdout(buf), pytest.raises(SystemExit) as exit_info:
        main(["fit", *config_args(files), "--print_config"])
    assert exit_info.value.code == 0, files
    cfg = yaml.safe_load(buf.getvalue())
    method = Path(files[-1]).stem
    want = next(y["model"]["class_path"] for y in (yaml.safe_load(Path(f).read_text()) for f in reversed(files)) if "model" in y)
    assert cfg["model"]["class_path"] == want
    assert cfg["model"]["init_args"]["teacher"]["class_path"]  # the base file's teacher survives the method's class_path
    if method in ("maskclip", "maskclip_pamr"):
        assert cfg["model"]["init_args"]["student"] is None
    if method == "maskclip_pamr":
        assert cfg["model"]["init_args"]["pamr_steps"] == 10 and cfg["model"]["init_args"]["smooth"] is True
    if method == "vild_ensemble":
        assert cfg["model"]["init_args"]["student"]["init_args"]["image_head"] is True
    if "configs/det/real.yaml" in files:  # ViLD's inference: every score kept; LVIS evaluates 300 detections
        student = cfg["model"]["init_args"]["student"]["init_args"]
        assert student["box_score_thresh"] == 0.0
        lvis = "configs/det/data/ov_lvis.yaml" in files
        assert student["box_detections_per_img"] == cfg["model"]["init_args"]["max_detections"] == (300 if lvis else 100)


def test_old_config_names_say_the_new_spelling():
    with pytest.raises(SystemExit, match="configs/seg/real.yaml -c configs/seg/data/voc20.yaml -c configs/seg/method/lseg.yaml"):
        main(["fit", "-c", "configs/seg/lseg_voc.yaml"])


def test_teacher_trunk_initialises_both_students(tmp_path):
    import torch

    from pipelines.world.teacher import load_shipped_teacher
    from students import PixelEmbeddingSegmenter, RegionEmbeddingDetector

    assert main(["teacher-trunk", "--out", str(tmp_path / "smp.pt")]) == 0
    assert main(["teacher-trunk", "--layout", "timm", "--out", str(tmp_path / "timm.pt")]) == 0
    trunk = load_shipped_teacher()[0].model.visual.trunk
    seg = PixelEmbeddingSegmenter(128, "Unet", "tu-resnet10t", encoder_weights=str(tmp_path / "smp.pt"))
    det = RegionEmbeddingDetector(128, "timm:resnet10t", weights=str(tmp_path / "timm.pt"), fpn_channels=16, representation_size=16)
    want = trunk.layer3[0].conv1.weight.float()
    torch.testing.assert_close(seg.net.encoder.model.layer3[0].conv1.weight, want)
    torch.testing.assert_close(det.backbone.body.layer3[0].conv1.weight, want)


@pytest.mark.parametrize("task", ["seg", "det"])
def test_fit_logs_to_tensorboard_with_the_resolved_vocabulary(task, tiny_world, tmp_path):
    """The default logger is TensorBoard; the module's and datamodule's logged vocabularies agree (Lightning
    refuses keys both log with different values), through the CLI and in process."""
    import warnings

    import yaml

    from distill.det_modules import ViLD
    from distill.seg_modules import LSeg
    from pipelines.bench.detection import world_detector
    from pipelines.bench.trainer import bench_trainer
    from pipelines.data.det_datamodule import WorldDetDataModule
    from pipelines.data.seg_datamodule import WorldSegDataModule
    from pipelines.world.teacher import load_shipped_teacher

    method, weights = ("lseg", "encoder_weights") if task == "seg" else ("vild_text", "weights")
    args = ["fit", "-c", f"configs/{task}/world.yaml", "-c", f"configs/{task}/method/{method}.yaml", "--data.init_args.world", str(tiny_world),
            f"--model.init_args.student.init_args.{weights}", "null", "--trainer.max_steps", "1", "--data.init_args.batch_size", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "cli")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
        run = tmp_path / "cli" / "lightning_logs" / "version_0"
        assert list(run.glob("events.out.tfevents.*"))
        held = "unseen" if task == "seg" else "novel"
        assert yaml.safe_load((run / "hparams.yaml").read_text())[held] == ["star", "heart", "ring"]
        teacher, _ = load_shipped_teacher()
        if task == "seg":
            from students import PixelEmbeddingSegmenter

            module, dm = LSeg(teacher, PixelEmbeddingSegmenter(128, encoder_name="tu-resnet10t")), WorldSegDataModule(str(tiny_world), batch_size=2)
        else:
            module, dm = ViLD(teacher, world_detector(128, 0)), WorldDetDataModule(str(tiny_world), batch_size=2)
        bench_trainer(1, False, tmp_path / "tb", f"{task} run").fit(module, dm)
    assert list((tmp_path / "tb" / f"{task}_run").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("student_in_eval", [False, True])
def test_fit_warns_about_eval_mode_modules_outside_the_frozen_teacher_only(student_in_eval, tiny_world):
    """The teacher is in eval mode by design, and Lightning's "modules in eval mode" warning for it is silenced;
    a student module left in eval mode (a real mistake) still gets the warning."""
    import warnings

    import lightning as L

    from distill.seg_modules import LSeg
    from pipelines.data.seg_datamodule import WorldSegDataModule
    from pipelines.world.teacher import load_shipped_teacher
    from students import PixelEmbeddingSegmenter

    teacher, _ = load_shipped_teacher()
    module = LSeg(teacher, PixelEmbeddingSegmenter(128, encoder_name="tu-resnet10t"))
    if student_in_eval:
        module.student.net.decoder.eval()
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, WorldSegDataModule(str(tiny_world), batch_size=2))
    eval_warnings = [str(w.message) for w in caught if "in eval mode at the start of training" in str(w.message)]
    assert sum(1 for _, m in module.teacher.named_modules() if not m.training) > 0  # the teacher really is in eval mode
    assert len(eval_warnings) == (1 if student_in_eval else 0), eval_warnings


def test_dependency_warning_silenced_and_only_it():
    """Lightning's LeafSpec deprecation (one line per fit, nothing a user can act on) is hidden; other warnings are not."""
    import warnings

    import torch
    from lightning.pytorch.utilities._pytree import _tree_flatten

    from pipelines.cli import quiet_dependency_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_dependency_warnings()
        _tree_flatten({"x": torch.zeros(1)})  # what Lightning runs on every batch
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use something else", FutureWarning, stacklevel=1)
        warnings.warn("another library's deprecation", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["another library's deprecation"]
