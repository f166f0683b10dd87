"""Dockerfile and .dockerignore, without a Docker engine.

The Dockerfile is parsed by BuildKit's own parser (the `dockerfile` package wraps it): a syntax
error fails here as it would in `docker build`. What the build runs (pip install .) is not tried.
"""
from __future__ import annotations

import fnmatch

import pytest

from .conftest import REPO, missing

# What `pip install .` and the image need from the build context.
NEEDED = ["pyproject.toml", "dtm/cli.py", "common/settings.py", "ingest/consumer.py", "scheduler/consumer.py",
          "worker/exporter.py", "deploy/probes/dtm-probe"]


@pytest.fixture(scope="module")
def instructions():
    try:
        import dockerfile
    except ImportError:
        missing("dockerfile (BuildKit's Dockerfile parser)")
    return dockerfile.parse_file(str(REPO / "Dockerfile"))


def final_stage(instructions):
    stages = [i for i, command in enumerate(instructions) if command.cmd == "FROM"]
    return instructions[stages[-1]:]


def test_runtime_image_is_python_311_slim_non_root_with_dtm_entrypoint(instructions):
    stage = final_stage(instructions)
    assert stage[0].value[0] == "python:3.11-slim"
    for command in instructions:
        if command.cmd == "FROM":
            assert command.value[0].startswith("python:3.11-slim"), command.original
    users = [command.value[0] for command in stage if command.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must run as a non-root user"
    (entrypoint,) = [command for command in stage if command.cmd == "ENTRYPOINT"]
    assert entrypoint.json and list(entrypoint.value) == ["dtm"]
    assert any(command.cmd == "RUN" and "pip install ." in command.value[0] for command in instructions)


def test_copied_files_exist(instructions):
    for command in instructions:
        if command.cmd == "COPY" and not any(flag.startswith("--from") for flag in command.flags):
            for source in command.value[:-1]:
                assert source == "." or (REPO / source).exists(), command.original


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, near enough: the last matching pattern wins, and a pattern that matches a
    folder matches everything under it. (fnmatch's * also crosses /: stricter than Docker, which is
    the safe side for the files the build needs.)"""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            result = not negated
    return result


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in NEEDED:
        assert not ignored(path, patterns), f"{path} is needed by the build but ignored"
    for path in (".venv/bin/python", ".git/HEAD", ".cache/validators/bin/promtool", "tests/deploy/conftest.py",
                 "k8s/base/kustomization.yaml", "deploy/prometheus/prometheus.yml", "common/__pycache__/x.pyc"):
        assert ignored(path, patterns), f"{path} should not reach the build context"
