"""The README names training runs by number (``lightning_logs/version_0`` is ViLD-text, ``version_1`` ViLD, ...):
the prediction passes between them (``ovdistill proposals``, ``pseudo-label``, ``cache``) must leave no log
directory of their own, or every later number in the README points at the wrong run."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
         "--data.init_args.batch_size", "4"]


def _det(method: str, world: Path) -> list[str]:
    return ["-c", str(ROOT / "configs/det/world.yaml"), "-c", str(ROOT / f"configs/det/method/{method}.yaml"),
            "--data.init_args.world", str(world), "--model.init_args.student.init_args.weights", "null"]


def _runs(cwd: Path) -> list[str]:
    logs = cwd / "lightning_logs"
    return sorted(p.name for p in logs.iterdir()) if logs.is_dir() else []


def test_prediction_passes_leave_the_readme_run_numbers_alone(tiny_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's commands run in the user's directory, with Lightning's default logger
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", *_det("vild_text", tiny_world), *QUICK]) == 0
        assert _runs(tmp_path) == ["version_0"]
        ckpt = "lightning_logs/version_0/checkpoints/last.ckpt"
        props = tmp_path / "proposals_train.pt"
        assert main(["proposals", *_det("vild_text", tiny_world), "--ckpt", ckpt, "--out", str(props), "--top-n", "4",
                     "--trainer.enable_progress_bar", "false"]) == 0
        assert main(["pseudo-label", *_det("vild_text", tiny_world), "--ckpt", ckpt, "--out", str(tmp_path / "pseudo.json"),
                     "--trainer.enable_progress_bar", "false"]) == 0
        seg = ["-c", str(ROOT / "configs/seg/world.yaml"), "-c", str(ROOT / "configs/seg/method/maskclip_plus.yaml"),
               "--data.init_args.world", str(tiny_world), "--model.init_args.student.init_args.encoder_weights", "null"]
        assert main(["cache", *seg, "--out", str(tmp_path / "cache"), "--trainer.enable_progress_bar", "false"]) == 0
        assert (tmp_path / "cache" / "index.json").is_file()
        assert _runs(tmp_path) == ["version_0"], "a prediction pass made a log directory"
        assert not list(tmp_path.glob("*.yaml")), "a prediction pass wrote a config into the working directory"
        assert main(["fit", *_det("vild", tiny_world), "--data.init_args.proposals", str(props), *QUICK]) == 0
        assert main(["fit", *_det("vild_ensemble", tiny_world), "--data.init_args.proposals", str(props), *QUICK]) == 0
        # a run number off by one hands round two the ensemble's two-headed detector: the refusal names what it holds
        with pytest.raises(ValueError, match=r"version_2/checkpoints/last.ckpt \(it holds a distill.det_modules.ViLD\) "
                                             r"does not fit PseudoBoxDetector"):
            main(["pseudo-label", *_det("pseudo_box", tiny_world), "--data.init_args.pseudo_labels", str(tmp_path / "pseudo.json"),
                  "--labeller", "detector", "--ckpt", "lightning_logs/version_2/checkpoints/last.ckpt", "--out", str(tmp_path / "r2.json")])
    assert _runs(tmp_path) == ["version_0", "version_1", "version_2"]
    weights = [yaml.safe_load((tmp_path / f"lightning_logs/version_{i}/config.yaml").read_text())["model"]["init_args"]["image_weight"]
               for i in (0, 1)]
    assert weights == [0.0, 0.5]  # version_0 is ViLD-text (no image loss), version_1 is ViLD, as the README says
