#!/usr/bin/env bash
# Builds the `handler` the Functions host runs, for a fixed glibc floor, whatever
# the build machine.
#
# Why: a plain `cargo build --release` links against the build machine's glibc.
# Here (Debian bookworm) that gives a binary needing GLIBC_2.34; on GitHub's
# ubuntu-latest (glibc 2.39) aws-lc-sys pulls in __isoc23_* symbols and the floor
# becomes GLIBC_2.38. The Functions v4 Linux images are Debian bullseye (glibc 2.31)
# and bookworm (2.36), and Flex Consumption's image is not published, so a binary
# above 2.31 may not start ("host cannot start the worker"). cargo-zigbuild links
# with zig against glibc 2.28 symbol versions instead.
#
# Usage: scripts/build-handler.sh          (prints the handler's path on stdout)
# Everything else (progress, installs) goes to stderr, so callers can capture the path:
#   handler="$(scripts/build-handler.sh)"
#
# Installs the pinned toolchain when it is missing: zig from PyPI (`ziglang`) and
# cargo-zigbuild from crates.io. Honours CARGO_TARGET_DIR.
set -euo pipefail

# Pinned toolchain. cargo-zigbuild runs `python3 -m ziglang` before any `zig` on PATH.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
# The glibc version the handler may need at most (the `.2.28` target suffix).
GLIBC_FLOOR=2.28
PROFILE=deploy
RUST_TARGET=x86_64-unknown-linux-gnu

say() { echo "build-handler: $*" >&2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

python=""
for candidate in python3 python; do
  if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
done
if [ -z "$python" ]; then
  say "no python3 on PATH: zig comes from PyPI (pip install ziglang==$ZIGLANG_VERSION)"
  exit 1
fi

# Use the pinned zig from this python if it has it; otherwise install it into a
# private virtual environment (system pythons may refuse `pip install`, PEP 668)
# and point cargo-zigbuild at that python.
have_zig="$("$python" -m ziglang version 2>/dev/null || true)"
if [ "$have_zig" != "$ZIGLANG_VERSION" ]; then
  venv="${HUB2LAKE_ZIG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hub2lake/ziglang-$ZIGLANG_VERSION}"
  if [ "$("$venv/bin/python3" -m ziglang version 2>/dev/null || true)" != "$ZIGLANG_VERSION" ]; then
    say "installing zig $ZIGLANG_VERSION from PyPI into $venv (found: ${have_zig:-none})"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" >&2
  fi
  export CARGO_ZIGBUILD_PYTHON_PATH="$venv/bin/python3"
fi

have_cz="$(cargo-zigbuild --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have_cz" != "$CARGO_ZIGBUILD_VERSION" ]; then
  say "installing cargo-zigbuild $CARGO_ZIGBUILD_VERSION (found: ${have_cz:-none}); takes a few minutes"
  cargo install cargo-zigbuild --locked --version "$CARGO_ZIGBUILD_VERSION" >&2
fi

say "cargo zigbuild --profile $PROFILE --locked --target $RUST_TARGET.$GLIBC_FLOOR --bin handler"
cargo zigbuild --profile "$PROFILE" --locked --target "$RUST_TARGET.$GLIBC_FLOOR" --bin handler >&2

# cargo-zigbuild drops the glibc suffix from the output directory.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
handler="$target_dir/$RUST_TARGET/$PROFILE/handler"
if [ ! -x "$handler" ]; then
  say "expected the build at $handler, but it is not there"
  exit 1
fi
echo "$handler"
