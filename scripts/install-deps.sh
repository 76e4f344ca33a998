#!/usr/bin/env bash
# Installs the Debian 12 packages stagegate needs to build, test and benchmark, skipping any
# already present. Never pulls Debian's default Boost 1.74 dev packages (they conflict).
set -euo pipefail
packages=(g++ cmake make pkg-config libboost1.81-all-dev nlohmann-json3-dev libssl-dev
          libgtest-dev libgmock-dev prometheus-cpp-dev curl openssl prometheus python3-yaml
          etcd-server)
case "${1:-}" in
  --bench) packages+=(wrk nginx-light haproxy) ;;
  --fuzz) packages+=(clang) ;;  # clang 14 with libFuzzer, for tests/fuzz
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
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
