#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries `ldd` lists for the given
# binaries, one per line, sorted: what the runtime image must install (the Dockerfile's
# runtime stage; tests/deploy/check_dockerfile.sh keeps the two in step).
set -euo pipefail
if [[ $# -eq 0 ]]; then
  echo "usage: $0 BINARY..." >&2
  exit 2
fi
for bin in "$@"; do
  ldd "$bin" | awk '/=>/ && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true)
  if [[ -z "$pkg" ]]; then
    echo "runtime-packages: no package provides $lib" >&2
    exit 1
  fi
  echo "${pkg%%:*}"
done | sort -u
