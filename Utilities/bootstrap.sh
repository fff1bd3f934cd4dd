#!/usr/bin/env bash
# Set up (or reuse) the virtual environment .venv in the repository root, then run the demo
# or the tests. Usage: Utilities/bootstrap.sh demo [pasta demo options] | test [pytest options]
set -euo pipefail

cd "$(dirname "$0")/.."
what="${1:-}"
shift || true
case "$what" in
  demo|test) ;;
  *) echo "usage: $0 demo|test [options]" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: Python 3.10 or newer is needed as '$PYTHON' (set PYTHON=...)" >&2
  exit 2
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {  # Debian/Ubuntu system packages, installed only when missing
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { echo "warning: please install ${missing[*]}" >&2; return 0; }
  echo "installing system packages: ${missing[*]}" >&2
  as_root apt-get update -qq >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "warning: could not install ${missing[*]}; some tests will be skipped" >&2
}

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install "python3-venv"
    "$PYTHON" -m venv .venv
  fi
fi

# Reinstall only when the dependency lists changed (stamp = hash of pyproject.toml and the
# requirement files it reads).
stamp=".venv/.pasta-installed"
want="$(cat pyproject.toml Resources/requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv (first run: a few minutes)..." >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # torch 2.13.0 is pinned: where no CUDA is wanted (CI, laptops) this resolves to the CPU build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[mrml,web,train,cohort,gcis,server,test]"
  # CLIP's tokenizer vocabulary for gCIS prompts ships in open_clip's wheel; its dependencies
  # (torchvision) are not needed and do not fit the pinned torch build
  .venv/bin/python -m pip install -q --no-deps "open_clip_torch==3.3.0"
  echo "$want" > "$stamp"
fi

if [ "$what" = demo ]; then
  exec .venv/bin/pasta demo --overwrite "$@"
else
  # dciodvfy validates the DICOM SEG/SR exports; poppler's pdftotext reads the PDF report's layout;
  # the web tests drive Debian's chromium (playwright downloads no browser) and VTK renders the
  # slice views off-screen through EGL (Mesa). Tests that need a missing one skip.
  apt_install dicom3tools poppler-utils chromium libegl1 libegl-mesa0 libgl1-mesa-dri
  exec .venv/bin/python -m pytest Testing "$@"
fi
