"""Deployment checks that need no Docker engine and no network.

The validators come from `scripts/install-validators.sh` (idempotent; CI runs it before pytest):
kubernetes-validate and check-jsonschema in the virtualenv, promtool in .cache/validators/bin,
docker-compose 1.29 from apt where possible, and the machine's kubectl. A test whose validator is
absent SKIPS, naming the script; with DTM_REQUIRE_VALIDATORS=1 it FAILS instead, so a CI that
installed them cannot silently skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = REPO / "k8s"
OVERLAYS = {"base": K8S / "base", "prod": K8S / "overlays" / "prod"}
INSTALL_HINT = "run scripts/install-validators.sh"


def missing(tool: str) -> None:
    """Skip (or fail under DTM_REQUIRE_VALIDATORS=1) for an absent validator."""
    message = f"{tool} is not installed: {INSTALL_HINT}"
    if os.environ.get("DTM_REQUIRE_VALIDATORS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def find_tool(name: str) -> str | None:
    """A validator's path: the validators cache, the virtualenv's bin, then PATH."""
    candidates = [
        Path(os.environ.get("VALIDATORS_DIR", REPO / ".cache" / "validators")) / "bin" / name,
        Path(sys.executable).parent / name,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool("promtool") or missing("promtool")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return find_tool("kubectl") or missing("kubectl (for kustomize)")


@pytest.fixture(scope="session")
def rendered(kubectl) -> dict[str, list[dict]]:
    """`kubectl kustomize` of the base and the prod overlay: {"base": [objects], "prod": [...]}."""
    out = {}
    for name, path in OVERLAYS.items():
        result = run([kubectl, "kustomize", str(path)])
        assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


class _Recorder(dict):
    """An environment that answers '' to everything and remembers what was asked."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default


@pytest.fixture(scope="session")
def known_settings() -> set[str]:
    """Every environment variable dtm's Settings reads (X_FILE forms included)."""
    from dtm.common.settings import Settings

    recorder = _Recorder()
    Settings.from_env(recorder)
    assert {"REDIS_URL", "S3_WAIT_TIME", "PROMETHEUS_MULTIPROC_DIR", "METRICS_PORT"} <= recorder.asked
    return recorder.asked
