"""The ``ovdistill`` command.

``fit | validate | test | predict`` are LightningCLI subcommands (configs, overrides, checkpoints,
``--print_config``). Project commands (``demo``, ``world``, ...) are dispatched before LightningCLI
sees the arguments, each with its own parser in the module that implements it.
"""
from __future__ import annotations

import sys
from importlib import import_module

# command -> ("module" or "module:function", short help); the function (default ``main``) takes argv.
PROJECT_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pipelines.demo", "run the whole mission offline on the synthetic world and print a results table"),
    "proposals": ("pipelines.det_cmd:main_proposals", "store a base-trained RPN's proposals + teacher region embeddings (ViLD-image)"),
    "pseudo-label": ("pipelines.det_cmd:main_pseudo", "write novel-class pseudo boxes (teacher or detector labeller) as COCO JSON"),
    "pretrain-teacher": ("pipelines.teacher_cmd", "contrastively pre-train the embedded teacher on captioned world scenes"),
    "teacher-trunk": ("pipelines.teacher_cmd:main_trunk", "export the embedded teacher's image trunk as student backbone weights"),
    "world": ("pipelines.world_cmd", "generate the synthetic open-vocabulary world (images, masks, boxes, captions)"),
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


def lightning_cli(args: list[str] | None = None, run: bool = True):
    """Build the LightningCLI over any LightningModule / LightningDataModule named by ``class_path``."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
    )


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in PROJECT_COMMANDS:
        module_name, _, function = PROJECT_COMMANDS[argv[0]][0].partition(":")
        return int(getattr(import_module(module_name), function or "main")(argv[1:]) or 0)
    # LightningCLI reads sys.argv itself when run from the shell (and warns if given both).
    lightning_cli(None if from_shell else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
