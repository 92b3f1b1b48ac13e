"""Loading manifests: multi-document YAML, JSON forms, directories, errors across files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orloj_ray.errors import InvalidResource
from orloj_ray.resources import Manifest, ManifestError, ManifestErrors, load_path, load_text

AGENT = "kind: Agent\nmetadata:\n  name: {name}\nspec:\n  model_ref: openai-default\n"
WORKER = {"apiVersion": "orloj.dev/v1", "kind": "Worker", "metadata": {"name": "w1"}}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_multi_document_yaml_with_empty_documents():
    text = "---\n" + AGENT.format(name="a") + "---\n# nothing here\n---\n" + AGENT.format(name="b") + "---\n"
    manifests = load_text(text, source="agents.yaml")
    assert [(m.source, m.index, m.kind, m.name, m.namespace) for m in manifests] == [
        ("agents.yaml", 0, "Agent", "a", "default"),
        ("agents.yaml", 2, "Agent", "b", "default"),
    ]
    assert isinstance(manifests[0], Manifest)
    assert manifests[0].doc["spec"]["model_ref"] == "openai-default"


@pytest.mark.parametrize("text", ["", "  \n", "---\n", "# just a comment\n", "null"])
def test_empty_text_has_no_manifests(text):
    assert load_text(text) == []


def test_json_object_list_and_items():
    assert [m.name for m in load_text(json.dumps(WORKER), source="w.json")] == ["w1"]
    listed = load_text(json.dumps([WORKER, {**WORKER, "metadata": {"name": "w2", "namespace": "eu"}}]))
    assert [(m.index, m.name, m.namespace) for m in listed] == [(0, "w1", "default"), (1, "w2", "eu")]
    items = load_text(json.dumps({"items": [WORKER]}))
    assert [(m.index, m.name) for m in items] == [(0, "w1")]


def test_yaml_bytes_sent_as_json_are_sniffed():
    # upstream's load tester posts raw YAML with Content-Type: application/json
    [manifest] = load_text(AGENT.format(name="planner"), source="request body")
    assert manifest.doc["spec"]["model_ref"] == "openai-default"


def test_json_errors_name_the_list_position():
    with pytest.raises(ManifestError) as info:
        load_text(json.dumps([WORKER, {"kind": "Worker", "metadata": {}}, 3]), source="w.json")
    assert str(info.value) == "w.json: document 2: metadata.name is required"
    assert (info.value.index, info.value.field) == (1, "metadata.name")


def test_document_that_is_not_a_map():
    with pytest.raises(ManifestError) as info:
        load_text("- a\n- b\n", source="list.yaml")
    assert str(info.value) == ("list.yaml: document 1: expected a manifest (a map with apiVersion, kind, "
                               "metadata, spec), got a list")


def test_yaml_syntax_error_names_file_document_and_line():
    text = AGENT.format(name="a") + "---\nkind: Agent\nmetadata:\n  name: b\n   bad: indent\n"
    with pytest.raises(ManifestError) as info:
        load_text(text, source="agents.yaml")
    err = info.value
    assert err.source == "agents.yaml" and err.index == 1 and err.field is None
    assert str(err).startswith("agents.yaml: document 2: invalid YAML at line 10, column ")


def test_load_text_raises_the_first_problem():
    text = "kind: Agent\nmetadata: {name: a}\nspec: {}\n---\nkind: Tool\nmetadata: {}\n"
    with pytest.raises(ManifestError) as info:
        load_text(text, source="x.yaml")
    assert str(info.value) == "x.yaml: document 1: spec.model_ref is required"


def test_directory_recursion_order_and_filters(tmp_path):
    write(tmp_path / "b.yaml", AGENT.format(name="b"))
    write(tmp_path / "a" / "z.yml", AGENT.format(name="az"))
    write(tmp_path / "a" / "deeper" / "w.json", json.dumps(WORKER))
    write(tmp_path / "a-c.yaml", AGENT.format(name="ac"))
    write(tmp_path / ".git" / "config.yaml", "not: [valid")
    write(tmp_path / ".hidden.yaml", "not: [valid")
    write(tmp_path / "notes.txt", "not a manifest")
    write(tmp_path / "README.md", "# docs")
    manifests = load_path(tmp_path)
    assert [m.name for m in manifests] == ["w1", "az", "ac", "b"]
    assert manifests[0].source == str(tmp_path / "a" / "deeper" / "w.json")
    assert load_path(str(tmp_path / "b.yaml"))[0].name == "b"


def test_a_file_given_by_name_is_read_whatever_its_suffix(tmp_path):
    assert [m.name for m in load_path(write(tmp_path / "agent.txt", AGENT.format(name="t")))] == ["t"]


def test_errors_are_collected_across_files(tmp_path):
    write(tmp_path / "1-good.yaml", AGENT.format(name="good"))
    bad_types = write(tmp_path / "2-types.yaml", AGENT.format(name="a") + "  limits:\n    max_steps: ten\n"
                      "---\n" + AGENT.format(name="b") + "  tools:\n    - {permissions: []}\n")
    bad_yaml = write(tmp_path / "3-syntax.yaml", "kind: Agent\nmetadata: [\n")
    write(tmp_path / "4-good.json", json.dumps(WORKER))
    with pytest.raises(ManifestErrors) as info:
        load_path(tmp_path)
    errors = info.value.errors
    assert isinstance(info.value, InvalidResource)
    assert all(isinstance(e, ManifestError) for e in errors)
    assert [(e.source, e.index, e.field) for e in errors] == [
        (str(bad_types), 0, "spec.limits.max_steps"),
        (str(bad_types), 1, "spec.tools[0].name"),
        (str(bad_yaml), 0, None),
    ]
    assert str(errors[0]) == f"{bad_types}: document 1: spec.limits.max_steps: expected an integer, got 'ten'"
    assert str(errors[1]) == f"{bad_types}: document 2: spec.tools[0].name is required"
    assert str(info.value).splitlines() == [str(e) for e in errors]


def test_missing_path(tmp_path):
    with pytest.raises(ManifestErrors) as info:
        load_path(tmp_path / "nope")
    [err] = info.value.errors
    assert str(err) == f"{tmp_path / 'nope'}: no such file or directory"


def test_unreadable_file_is_reported(tmp_path):
    write(tmp_path / "ok.yaml", AGENT.format(name="ok"))
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ManifestErrors) as info:
        load_path(tmp_path)
    [err] = info.value.errors
    assert err.source == str(tmp_path / "binary.yaml") and err.index is None
    assert "cannot read file" in str(err)


def test_empty_directory(tmp_path):
    assert load_path(tmp_path) == []


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeff".encode() + AGENT.format(name="bom").encode())
    assert load_path(path)[0].name == "bom"


def test_collected_errors_survive_pickling(tmp_path):
    import pickle

    write(tmp_path / "bad.yaml", "kind: Agent\nmetadata: {name: a}\nspec: {}\n")
    with pytest.raises(ManifestErrors) as info:
        load_path(tmp_path)
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) == f"{tmp_path / 'bad.yaml'}: document 1: spec.model_ref is required"
    assert [(e.source, e.index, e.field) for e in copy.errors] == [(str(tmp_path / "bad.yaml"), 0, "spec.model_ref")]
