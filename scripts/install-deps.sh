#!/usr/bin/env bash
# Installs the Debian 12 packages stagegate needs to build, test and benchmark, skipping any
# already present. Never pulls Debian's default Boost 1.74 dev packages (they conflict).
# usage: install-deps.sh [--build | --bench] [--list]
#   --build  only what building the binaries with the tests off takes (the Dockerfile's build
#            stage): no promtool, etcd, GoogleTest, Node.js or chromium
#   --list   print the packages instead of installing them
set -euo pipefail
# Building: clang (scripts/build.sh's compiler: it built the tree in about 0.75x g++'s time,
# and its request path ran 0.98x g++'s instructions; clang 14 also brings libFuzzer and the
# sanitizers' runtimes, for tests/fuzz), lld (CMakeLists.txt links with it: the test binaries
# link in about a third of GNU ld's time), g++ (its libstdc++, and the TSan build), Boost's
# headers (Asio, Beast, System, Math), Program_options (both executables' command lines) and
# URL (URLs and percent-encoding on the control plane).
build_packages=(clang lld g++ cmake make libboost1.81-dev libboost-program-options1.81-dev
                libboost-url1.81-dev nlohmann-json3-dev libssl-dev prometheus-cpp-dev
                libnghttp2-dev)
# Testing, benchmarking and development on top of that.
# chromium: the admin dashboard's test opens it in a real browser (headless, driven by the
# pinned puppeteer-core in tests/clients).
packages=("${build_packages[@]}" pkg-config libboost1.81-all-dev libgtest-dev libgmock-dev curl
          openssl prometheus python3-yaml etcd-server nghttp2-client chromium)
build_only=false
list=false
for arg in "$@"; do
  case "$arg" in
    --build) build_only=true; packages=("${build_packages[@]}") ;;
    --bench) packages+=(wrk nginx-light haproxy) ;;
    --list) list=true ;;
    *) echo "usage: $0 [--build | --bench] [--list]" >&2; exit 2 ;;
  esac
done
# Node.js and npm drive the real clients in tests/clients (the openai SDK; puppeteer-core,
# which drives chromium through the dashboard); the machine's own are used when present, else
# Debian's.
if ! $build_only; then
  command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
fi
if $list; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The npm clients the tests drive, at the versions package-lock.json pins.
install_clients() {
  local dir
  dir="$(dirname "$0")/../tests/clients"
  if [[ ! -f $dir/node_modules/.package-lock.json ||
        $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
if ((${#missing[@]} == 0)); then
  $build_only || install_clients
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# prometheus (for its promtool and the scrape test) must not start a system service here.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
  $sudo chmod +x $policy
  trap '$sudo rm -f $policy' EXIT
fi
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
$build_only || install_clients
