#!/usr/bin/env bash
# `make run`: up -> apply the pipeline blueprint with --run -> wait -> trace -> down.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORLOJ_HOME="${ORLOJ_HOME:-$(mktemp -d)}"
PORT="${ORLOJ_PORT:-8080}"
export ORLOJ_SERVER="http://127.0.0.1:${PORT}"
TASK=bp-pipeline-task

orloj up --detach --port "$PORT"
trap 'orloj down' EXIT
orloj apply -f examples/blueprints/pipeline --run
orloj wait "task/$TASK" --for condition=Complete --timeout 2m
orloj trace task "$TASK"
