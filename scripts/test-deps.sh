#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust and Node.js, when it is missing:
#   - redis-server: tests/bridge.rs starts its own on a free port (Debian package);
#   - openssl: the bridge's rediss:// test makes its TLS certificates with it;
#   - objdump (binutils): the package tests and .ci/run check the handler's glibc floor.
# Azurite comes from package-lock.json (`npm ci`); zig and cargo-zigbuild, pinned, from
# scripts/build-handler.sh when `hub2lake package` first needs them.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v objdump >/dev/null || missing+=(binutils)
if ((${#missing[@]})); then
  echo "test-deps: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
