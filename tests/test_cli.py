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
