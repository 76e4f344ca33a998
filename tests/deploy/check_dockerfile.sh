#!/usr/bin/env bash
# The Dockerfile's runtime stage installs every package that provides a library the shipped
# binaries link (scripts/runtime-packages.sh, from ldd), and copies every binary; its build
# stage installs only what a build with the tests off takes; .dockerignore keeps the host's
# build trees (whose CMakeCache.txt fails the image's cmake), .git and node_modules out.
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

# The build stage: everything before the last FROM.
build=$(awk '/^FROM /{n++} {print n "\t" $0}' "$dockerfile" |
        awk -F'\t' -v last="$(grep -c '^FROM ' "$dockerfile")" '$1 < last {print $2}')
if ! grep -q 'install-deps.sh --build' <<<"$build" || ! grep -q 'STAGEGATE_TESTS=OFF' <<<"$build"; then
  echo "Dockerfile: the build stage must install with install-deps.sh --build and build with the tests off"
  status=1
fi
for pkg in $("$src/scripts/install-deps.sh" --build --list) $(grep -o 'apt-get install[^&]*' <<<"$build"); do
  case "$pkg" in
    prometheus|etcd-server|libgtest-dev|libgmock-dev|googletest|nodejs|npm|python3-yaml)
      echo "Dockerfile: the build stage installs $pkg, which only the tests use"
      status=1 ;;
  esac
done

# .dockerignore: each of these paths is left out of the build context.
ignored() {
  local path=$1 pattern
  while read -r pattern; do
    pattern=${pattern#/}
    pattern=${pattern%/}
    [[ -z $pattern || $pattern == \#* || $pattern == !* ]] && continue
    # shellcheck disable=SC2053  # the pattern is a glob
    if [[ $path == $pattern || $path == $pattern/* ]]; then
      return 0
    fi
  done <"$src/.dockerignore"
  return 1
}
if [[ ! -f $src/.dockerignore ]]; then
  echo ".dockerignore: missing (COPY . . would take the host's build/ into the image)"
  status=1
else
  for path in build build-release build-asan/CMakeCache.txt .git tests/clients/node_modules; do
    if ignored "$path"; then
      continue
    fi
    echo ".dockerignore: does not leave out $path"
    status=1
  done
  for path in src/main.cpp CMakeLists.txt scripts/build.sh config/demo.json; do
    if ignored "$path"; then
      echo ".dockerignore: leaves out $path, which the image's build needs"
      status=1
    fi
  done
fi
[[ $status -eq 0 ]] && echo "Dockerfile runtime stage covers: $("$src/scripts/runtime-packages.sh" "$@" | tr '\n' ' ')"
exit $status
