"""Upstream's 98 example manifests normalize exactly as upstream's parser does (F001-F003),
and normalization is idempotent."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from orloj_ray.resources import load_path, load_text, normalize

CONFORMANCE = Path(__file__).resolve().parent / "conformance"  # a copy of shared/conformance
GOLDEN_FILE = CONFORMANCE / "upstream-examples-normalized.jsonl"
EXAMPLES = CONFORMANCE / "upstream-examples"

GOLDEN = [json.loads(line) for line in GOLDEN_FILE.read_text().splitlines() if line.strip()]


def test_corpus_is_complete():
    assert len(GOLDEN) == 98
    kinds = {g["normalized"]["kind"] for g in GOLDEN}
    assert len(kinds) == 14 and "ToolApproval" not in kinds  # ToolApproval: test_resources_defaults


@pytest.mark.parametrize("golden", GOLDEN, ids=[g["path"] for g in GOLDEN])
def test_example_normalizes_like_upstream(golden):
    manifests = load_path(EXAMPLES / golden["path"])
    assert len(manifests) == 1
    assert manifests[0].doc == golden["normalized"]
    assert manifests[0].index == 0


def test_whole_corpus_loads_as_one_batch():
    manifests = load_path(EXAMPLES)
    assert len(manifests) == len(GOLDEN)
    assert [m.source for m in manifests] == sorted(m.source for m in manifests)


@pytest.mark.parametrize("golden", GOLDEN, ids=[g["path"] for g in GOLDEN])
def test_normalize_is_idempotent(golden):
    once = golden["normalized"]
    assert normalize(copy.deepcopy(once)) == once
    assert normalize(normalize(copy.deepcopy(once))) == once


def test_json_body_of_a_yaml_example_is_equivalent():
    # orlojctl sends the normalized JSON; the load tester sends raw YAML: both must agree.
    golden = next(g for g in GOLDEN if g["path"] == "resources/agents/planner_agent.yaml")
    from_json = load_text(json.dumps(golden["normalized"]), source="body")[0].doc
    from_yaml = load_text((EXAMPLES / golden["path"]).read_text(), source="body")[0].doc
    assert from_json == from_yaml == golden["normalized"]
    assert from_yaml["spec"]["model_ref"] == "openai-default"


def test_server_owned_metadata_and_status_are_kept():
    stored = copy.deepcopy(next(g["normalized"] for g in GOLDEN if g["normalized"]["kind"] == "Task"))
    stored["metadata"].update(resourceVersion="7", generation=2, createdAt="2025-01-02T03:04:05Z")
    stored["status"] = {
        "phase": "Succeeded",
        "attempts": 1,
        "output": {"final": "done"},
        "trace": [{"step_id": "a001.s0001", "type": "model_call", "tokens": 12, "retryable": False}],
        "join_states": [{"node": "editor", "activated": True, "sources": [{"message_id": "m1"}]}],
    }
    assert normalize(copy.deepcopy(stored)) == stored
