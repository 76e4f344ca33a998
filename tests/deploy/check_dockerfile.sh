#!/usr/bin/env bash
# The Dockerfile's runtime stage installs every package that provides a library the shipped
# binaries link (scripts/runtime-packages.sh, from ldd), and copies every binary.
# usage: check_dockerfile.sh SOURCE_DIR BINARY...
set -euo pipefail
src=$1; shift
dockerfile="$src/Dockerfile"
# The runtime stage: everything after the last FROM.
runtime=$(awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END {printf "%s", stage}' "$dockerfile")
installed=$(printf '%s' "$runtime" | tr -d '\\' | tr '\n' ' ' | grep -o 'apt-get install[^&]*' | tr ' ' '\n')
status=0
for pkg in $("$src/scripts/runtime-packages.sh" "$@"); do
  if ! grep -qx -- "$pkg" <<<"$installed"; then
    echo "Dockerfile: the runtime stage does not install $pkg (ldd of the binaries needs it)"
    status=1
  fi
done
for bin in "$@"; do
  if ! grep -q "/src/build/$(basename "$bin")\b" <<<"$runtime"; then
    echo "Dockerfile: the runtime stage does not copy $(basename "$bin")"
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "Dockerfile runtime stage covers: $("$src/scripts/runtime-packages.sh" "$@" | tr '\n' ' ')"
exit $status
