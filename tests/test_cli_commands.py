"""One command line: every command under ``galsim-hub``, one exit-status policy, the training alias."""

from __future__ import annotations

import pytest

from galsim_hub.cli import EXIT_ERROR, EXIT_TARGETS_FAILED, EXIT_USAGE, build_parser, main, training_commands

COMMANDS = {
    "list",
    "info",
    "fetch",
    "cache",
    "publish",
    "sample",
    "dataset",
    "train",
    "export",
    "upgrade",
    "validate",
    "aegis",
    "diagnose",
    "curve",
}


def test_every_command_is_a_galsim_hub_command():
    subparsers = next(action for action in build_parser()._actions if action.dest == "command")
    assert set(subparsers.choices) == COMMANDS


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--stage", "nope", "--config", "c.yaml", "--work-dir", "w"])
    assert exit_info.value.code == EXIT_USAGE
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_training_errors_follow_the_hub_policy(tmp_path, capsys):
    status = main(["dataset", "--config", str(tmp_path / "missing.yaml"), "--work-dir", str(tmp_path / "w")])
    assert status == EXIT_ERROR
    assert capsys.readouterr().err.startswith("galsim-hub: error: ")


def _fake_validation(passed: bool, tmp_path):
    def run_validation(model, data, out, **options):
        return {
            "targets": [
                {"name": "t", "description": "d", "value": 1.0, "error": 0.1, "requirement": "r", "passed": passed}
            ],
            "report": tmp_path / "validation.md",
        }

    return run_validation


@pytest.mark.parametrize(
    "passed, strict, status", [(True, True, 0), (False, False, 0), (False, True, EXIT_TARGETS_FAILED)]
)
def test_validate_strict_exits_3_only_when_a_target_fails(passed, strict, status, tmp_path, monkeypatch):
    from galsim_hub.training.validation import morphology

    monkeypatch.setattr(morphology, "run_validation", _fake_validation(passed, tmp_path))
    argv = ["validate", "hub:any", "--data", str(tmp_path), "--out", str(tmp_path)] + (["--strict"] if strict else [])
    assert main(argv) == status


@pytest.mark.parametrize("stage", ["vae", "flow", "all"])
def test_python_m_training_keeps_the_old_stage_names(stage, monkeypatch):
    from galsim_hub.training.__main__ import main as training_main

    seen = []
    monkeypatch.setattr(training_commands, "cmd_train", lambda args: seen.append(args) or 0)
    assert training_main([stage, "--config", "c.yaml", "--work-dir", "w"]) == 0
    assert seen[0].command == "train" and seen[0].stage == stage
