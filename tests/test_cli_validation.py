"""``orloj validate`` and ``orloj apply`` print warnings and every error, and never a traceback
(issue 17 point 4, issue 15 point 3)."""

from __future__ import annotations

import pytest

from orloj_ray.cli.main import main
from test_resources_limits import billion_laughs

TYPO = "kind: Agent\nmetadata: {name: a}\nspec: {model_ref: m, promt: hello}\n"


def test_validate_prints_unknown_fields_as_warnings(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(TYPO)
    assert main(["validate", "-f", str(tmp_path / "a.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "valid  agent/a" in out and "1 valid" in out
    assert err.strip() == (f'warning: {tmp_path / "a.yaml"}: document 1: spec.promt: unknown field, ignored '
                           '(did you mean "prompt"?)')


def test_validate_strict_makes_them_errors(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(TYPO)
    assert main(["validate", "--strict", "-f", str(tmp_path / "a.yaml")]) == 1
    err = capsys.readouterr().err
    assert "0 valid, 1 invalid" in err and 'spec.promt: unknown field (did you mean "prompt"?)' in err


def test_validate_reports_every_error_of_a_document(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("kind: Agent\nmetadata: {name: a}\nspec: {modle_ref: m, replicas: -1}\n")
    assert main(["validate", "-f", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "invalid spec.replicas -1: expected >= 0" in err and "spec.model_ref is required" in err
    assert 'did you mean "model_ref"' in err and "0 valid, 1 invalid:" in err


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, "a: " + "{b: " * 10_000 + "1" + "}" * 10_000,
                                  billion_laughs(7)])
@pytest.mark.parametrize("command", ["validate", "apply"])
def test_hostile_files_are_clean_errors_not_tracebacks(tmp_path, capsys, text, command):
    (tmp_path / "bad.yaml").write_text(text)
    args = [command, "-f", str(tmp_path / "bad.yaml")]
    if command == "apply":  # nothing is sent: the server address is never reached
        args = ["--server", "http://127.0.0.1:9", *args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RecursionError" not in err
    assert "nested deeper than 64 levels" in err or "aliases expand the document" in err


def test_apply_prints_warnings_before_sending(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(TYPO)
    assert main(["--server", "http://127.0.0.1:9", "apply", "--dry-run", "-f", str(tmp_path / "a.yaml")]) != 0
    assert 'spec.promt: unknown field, ignored (did you mean "prompt"?)' in capsys.readouterr().err
