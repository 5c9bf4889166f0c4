"""The ``ovdistill`` entry point dispatches project commands and Lightning subcommands."""
from __future__ import annotations

import pytest

from pipelines.cli import PROJECT_COMMANDS, main


def test_help_lists_every_project_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in PROJECT_COMMANDS:
        assert name in out
    assert "fit" in out


def test_lightning_subcommand_help_is_lightning_cli(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert "--trainer.strategy" in capsys.readouterr().out


def test_every_config_parses(tmp_path):
    """Each shipped config is a valid LightningCLI config (classes importable, arguments known)."""
    import glob
    import io
    from contextlib import redirect_stdout

    configs = sorted(glob.glob("configs/*/*.yaml"))
    assert len(configs) >= 20
    for cfg in configs:
        buf = io.StringIO()
        with redirect_stdout(buf), pytest.raises(SystemExit) as exit_info:
            main(["fit", "-c", cfg, "--print_config"])
        assert exit_info.value.code == 0, cfg
        assert "class_path" in buf.getvalue()


def test_teacher_trunk_initialises_both_students(tmp_path):
    import torch

    from pipelines.embedded_teacher import load_shipped_teacher
    from students import PixelEmbeddingSegmenter, RegionEmbeddingDetector

    assert main(["teacher-trunk", "--out", str(tmp_path / "smp.pt")]) == 0
    assert main(["teacher-trunk", "--layout", "timm", "--out", str(tmp_path / "timm.pt")]) == 0
    trunk = load_shipped_teacher()[0].model.visual.trunk
    seg = PixelEmbeddingSegmenter(128, "Unet", "tu-resnet10t", encoder_weights=str(tmp_path / "smp.pt"))
    det = RegionEmbeddingDetector(128, "timm:resnet10t", weights=str(tmp_path / "timm.pt"), fpn_channels=16, representation_size=16)
    want = trunk.layer3[0].conv1.weight.float()
    torch.testing.assert_close(seg.net.encoder.model.layer3[0].conv1.weight, want)
    torch.testing.assert_close(det.backbone.body.layer3[0].conv1.weight, want)
