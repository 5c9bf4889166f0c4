"""The ``ovdistill`` command.

``fit | validate | test | predict`` are LightningCLI subcommands (configs, overrides, checkpoints,
``--print_config``). Project commands (``demo``, ``world``, ...) are dispatched before LightningCLI
sees the arguments, each with its own parser in the module that implements it.
"""
from __future__ import annotations

import sys
import warnings
from importlib import import_module
from pathlib import Path

# command -> ("module" or "module:function", short help); the function (default ``main``) takes argv.
PROJECT_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pipelines.commands.demo", "run the whole mission offline on the synthetic world and print a results table"),
    "cache": ("pipelines.commands.cache", "precompute the teacher's dense maps of a training split (sharded, resumable, multi-rank)"),
    "proposals": ("pipelines.commands.proposals", "store a base-trained RPN's proposals + teacher region embeddings (ViLD-image)"),
    "pseudo-label": ("pipelines.commands.pseudo_label", "write novel-class pseudo boxes (teacher or detector labeller) as COCO JSON"),
    "evaluate": ("pipelines.commands.evaluate", "open-vocabulary AP / mIoU of any model's prediction files, with tables and plots"),
    "prompts": ("pipelines.commands.prompts", "learn prompt context on base classes (CoOp / DetPro) into a prompt file"),
    "pretrain-teacher": ("pipelines.commands.teacher", "contrastively pre-train the embedded teacher on captioned world scenes"),
    "teacher-trunk": ("pipelines.commands.teacher:main_trunk", "export the embedded teacher's image trunk as student backbone weights"),
    "world": ("pipelines.commands.world", "generate the synthetic open-vocabulary world (images, masks, boxes, captions)"),
}


def _usage() -> str:
    lines = [
        "usage: ovdistill {fit,validate,test,predict} -c CONFIG.yaml [--overrides]",
        "       ovdistill {" + ",".join(PROJECT_COMMANDS) + "} [--help]",
        "",
        "Lightning subcommands: fit, validate, test, predict (see `ovdistill fit --help`).",
        "Project commands:",
    ]
    lines += [f"  {name:<18} {help_}" for name, (_, help_) in PROJECT_COMMANDS.items()]
    return "\n".join(lines)


def _nulls_to_none(node):
    """``--a.b.c null`` on the command line reaches nested ``init_args`` as the string ``'None'`` (jsonargparse);
    a command-line null always means None here."""
    from jsonargparse import Namespace

    if isinstance(node, Namespace):
        for key in list(node.keys()):
            value = node[key]
            if isinstance(value, str) and value in ("None", "null"):
                node[key] = None
            elif isinstance(value, (Namespace, list)):
                _nulls_to_none(value)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, str) and value in ("None", "null"):
                node[i] = None
            else:
                _nulls_to_none(value)


def root_cause(err: Exception) -> str | None:
    """The first error jsonargparse collected under 'Does not validate against any of the Union subtypes'."""
    text = str(err)
    if "Does not validate against any of the Union subtypes" not in text or "Errors:" not in text:
        return None
    for line in text.split("Errors:", 1)[1].splitlines():
        line = line.strip()
        if line.startswith("- ") and "Expected a <class 'NoneType'>" not in line and "Does not validate against" not in line:
            return line[2:]
    return None


# Trainer options where an int counts batches and a float is a fraction; jsonargparse turns `1` into 1.0 (100%).
COUNT_OR_FRACTION = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches", "val_check_interval")


def _integer_trainer_values(argv: list[str]) -> dict[str, int]:
    """The count-or-fraction trainer options that the config files or the command line give as integers."""
    import yaml

    found: dict[str, int] = {}
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv) and Path(argv[i + 1]).is_file():
            data = yaml.safe_load(Path(argv[i + 1]).read_text()) or {}
            trainer = data.get("trainer") or {}
            for key in COUNT_OR_FRACTION:
                if key in trainer:
                    value = trainer[key]
                    if isinstance(value, int) and not isinstance(value, bool):
                        found[key] = value
                    else:
                        found.pop(key, None)
        for key in COUNT_OR_FRACTION:
            flag = f"--trainer.{key}"
            value = arg.split("=", 1)[1] if arg.startswith(flag + "=") else (argv[i + 1] if arg == flag and i + 1 < len(argv) else None)
            if value is not None:
                if value.strip().isdigit():
                    found[key] = int(value)
                else:
                    found.pop(key, None)
    return found


def lightning_cli(args: list[str] | None = None, run: bool = True, logger: bool = True):
    """Build the LightningCLI over any LightningModule / LightningDataModule named by ``class_path``.

    ``logger=False``: a prediction pass (``cache``, ``proposals``, ``pseudo-label``) has nothing to log, and a
    ``lightning_logs/version_N`` of its own would shift the numbering of the training runs a user names next.
    """
    if not logger:
        args = [*(sys.argv[1:] if args is None else args), "--trainer.logger", "false"]
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

    class OVDistillCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            if run:  # `predict` writes files `evaluate` reads (--predictions.output_dir); the offline passes predict otherwise
                from pipelines.offline.prediction_writer import PredictionWriter

                parser.add_lightning_class_args(PredictionWriter, "predictions")

        def before_predict(self) -> None:
            # the writer has the predictions on disk; holding them all in memory as well would grow with the dataset
            if self.config_init["predict"].get("return_predictions") is None:
                self.config_init["predict"]["return_predictions"] = False

        def before_instantiate_classes(self) -> None:
            _nulls_to_none(self.config)

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
                # jsonargparse casts these to float (1 -> 100%); the Trainer reads the attributes at run time
                for key, value in _integer_trainer_values(list(sys.argv[1:] if args is None else args)).items():
                    setattr(self.trainer, key, value)
            except ValueError as err:
                cause = root_cause(err)
                if cause is None:
                    raise
                raise ValueError(f"{cause}\n(while building the config's classes; jsonargparse's full report follows)\n{err}") from None

    return OVDistillCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        # the offline commands (run=False) predict; only a training run records its config
        save_config_callback=SaveConfigCallback if run else None,
    )


_OLD_DATA = {"voc": "voc20", "context59": "context59", "coco_stuff": "coco_stuff171", "ov_coco": "ov_coco", "ov_lvis": "ov_lvis"}


def renamed_config(path: str) -> str | None:
    """The composed ``-c`` files that replace a wave-1 single config such as ``configs/seg/lseg_voc.yaml``."""
    import re

    m = re.fullmatch(r"(?:.*/)?configs/(seg|det)/(\w+?)_(voc|context59|coco_stuff|world|ov_coco|ov_lvis)\.yaml", path)
    if m is None:
        return None
    task, method, data = m.groups()
    base = f"-c configs/{task}/world.yaml" if data == "world" else f"-c configs/{task}/real.yaml -c configs/{task}/data/{_OLD_DATA[data]}.yaml"
    return f"{base} -c configs/{task}/method/{method}.yaml"


def _check_config_paths(argv: list[str]) -> None:
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-c", "--config") and not Path(argv[i + 1]).is_file():
            new = renamed_config(argv[i + 1])
            hint = f"; configs are now composed: {new}" if new else ""
            raise SystemExit(f"ovdistill: config file {argv[i + 1]} does not exist (in {Path.cwd()}){hint}")


def quiet_dependency_warnings() -> None:
    """Silence the dependencies' warnings a user can do nothing about, and only those (each by its exact text).

    Lightning 2.6 flattens every batch with ``isinstance(treespec, LeafSpec)``, which torch (2.14 here) deprecates: one
    line per ``fit`` that names neither this project nor the user's code."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    quiet_dependency_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in PROJECT_COMMANDS:
        module_name, _, function = PROJECT_COMMANDS[argv[0]][0].partition(":")
        return int(getattr(import_module(module_name), function or "main")(argv[1:]) or 0)
    _check_config_paths(argv)
    # Lightning treats `--ckpt_path last` without a last.ckpt as "start from scratch" (fit) or "use the current,
    # untrained weights" (test) with a warning; here it is an error.
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r'.*ckpt_path="last"\) is set, but there is no last checkpoint')
        try:
            # LightningCLI reads sys.argv itself when run from the shell (and warns if given both).
            lightning_cli(None if from_shell else argv)
        except Warning as warning:
            if "no last checkpoint" not in str(warning):
                raise
            raise SystemExit(
                "ovdistill: --ckpt_path last found no last.ckpt in this run's checkpoint directory (a new run gets a new "
                "lightning_logs/version_N); give the training run's checkpoint path, e.g. "
                "--ckpt_path lightning_logs/version_0/checkpoints/last.ckpt"
            ) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
