#!/usr/bin/env bash
# Install the offline validators that tests/deploy/ uses, idempotently (a second run is a no-op).
#
#   kubernetes-validate, check-jsonschema,
#   dockerfile (BuildKit's Dockerfile parser) -> the project's virtualenv (pip)
#   promtool                               -> $VALIDATORS_DIR/bin/promtool, extracted from Debian's
#                                             `prometheus` package (apt-get download + dpkg-deb -x:
#                                             19 MB instead of the 332 MB that apt-get install pulls)
#   docker-compose 1.29 (optional)         -> Debian's `docker-compose` with apt, when running as root
#
# kubectl (for `kubectl kustomize`) is expected on the machine; it is not installed here.
# Usage: scripts/install-validators.sh            (from anywhere; paths are relative to the repo)
#        VALIDATORS_DIR=/somewhere PYTHON=python3 scripts/install-validators.sh
# Then: .venv/bin/pytest tests/deploy   (DTM_REQUIRE_VALIDATORS=1 turns a missing validator's skip
# into a failure, for CI).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${VALIDATORS_DIR:-$repo/.cache/validators}
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
mkdir -p "$dir/bin"

say() { echo "install-validators: $*"; }

# --- Python validators -------------------------------------------------------------------------
missing=()
"$python" -c 'import kubernetes_validate' 2>/dev/null || missing+=(kubernetes-validate)
"$python" -c 'import check_jsonschema' 2>/dev/null || missing+=(check-jsonschema)
"$python" -c 'import dockerfile' 2>/dev/null || missing+=(dockerfile)
if [ ${#missing[@]} -gt 0 ]; then
  say "pip install ${missing[*]}"
  "$python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
else
  say "kubernetes-validate, check-jsonschema and dockerfile already installed"
fi

# --- promtool ------------------------------------------------------------------------------------
if [ -x "$dir/bin/promtool" ] && "$dir/bin/promtool" --version >/dev/null 2>&1; then
  say "promtool already in $dir/bin"
elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt-get download needs package lists; run `apt-get update` once if they are absent or stale.
  if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
    say "apt-get update (package lists missing or stale)"
    apt-get update -qq >/dev/null
    (cd "$work" && apt-get download -qq prometheus >/dev/null)
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  install -m 0755 "$work/root/usr/bin/promtool" "$dir/bin/promtool"
  say "promtool $("$dir/bin/promtool" --version 2>&1 | head -n1 | awk '{print $3}') -> $dir/bin/promtool"
else
  say "no apt-get/dpkg-deb: promtool not installed (tests/deploy promtool checks will skip)"
fi

# --- docker-compose 1.29 (optional: check-jsonschema's compose-spec check does not need it) -----
if command -v docker-compose >/dev/null; then
  say "docker-compose already installed"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1; then
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 \
      || say "docker-compose not available from apt: only the compose-spec schema check will run"
  fi
  command -v docker-compose >/dev/null && say "docker-compose $(docker-compose version --short 2>/dev/null) installed"
else
  say "not root: docker-compose 1.29 not installed (only the compose-spec schema check will run)"
fi

command -v kubectl >/dev/null || say "kubectl not found: kustomize rendering tests will skip"
exit 0
