#!/usr/bin/env bash
# Installs the system packages the tests use (real iptables in network
# namespaces, promtool), when running as root and they are missing. Without
# root it only says what is missing: the tests that need it skip loudly (or
# fail, under SIDECAR_INJECTOR_REQUIRE_ALL=1 or CI=true).
set -euo pipefail

need=()
command -v iptables-legacy >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root; missing packages: ${need[*]} (tests that need them will skip, or fail under SIDECAR_INJECTOR_REQUIRE_ALL=1)" >&2
  exit 0
fi
echo "install-deps: apt-get install ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
