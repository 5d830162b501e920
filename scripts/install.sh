#!/usr/bin/env bash
# Installs what vifwire needs on a Debian machine, as root, and nothing twice:
# Open vSwitch (vifwire runs its own private copy of it), iproute2 and ping for
# the emulated VMs, and a virtualenv in .venv with the package.
# Usage: scripts/install.sh [extras]   e.g. scripts/install.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}

need=()
command -v ovsdb-server >/dev/null 2>&1 || need+=(openvswitch-switch)
[ -d /usr/lib/python3/dist-packages/ovs ] || need+=(python3-openvswitch)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The profiler's HTML report is checked in headless Chromium by the tests.
if [ "$extras" = test ] && ! command -v chromium >/dev/null 2>&1; then need+=(chromium); fi
# The authentication tests run a real Keystone (Debian's, Zed) under uwsgi, private
# to the run (tests/keystone_rig.py); the packaged keystone service is not used.
keystone=()
if [ "$extras" = test ]; then
  # tempest: tests/clients/test_tempest.py runs a bounded part of Tempest's network API tests.
  for p in keystone uwsgi-core uwsgi-plugin-python3 tempest; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || keystone+=("$p")
  done
fi
if [ $(( ${#need[@]} + ${#keystone[@]} )) -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "error: run as root to install: ${need[*]} ${keystone[*]}" >&2; exit 1; fi
  echo "installing Debian packages: ${need[*]} ${keystone[*]}" >&2
  apt-get update -qq
  if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ ${#keystone[@]} -gt 0 ]; then
    # No database, admin or endpoint of its own, and its service not started: the
    # tests run their own Keystone (as ../shared/peers/tempest/setup.sh does).
    debconf-set-selections <<'EOC'
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
EOC
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${keystone[@]}" \
      >/dev/null || status=$?
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || exit "$status"
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  echo "installing vifwire into .venv" >&2
  if ! .venv/bin/pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" \
      > .venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    echo "error: pip could not install vifwire (log above, also in .venv/pip.log)" >&2
    exit 1
  fi
  touch "$stamp"
fi

# The `ovs` wheel on PyPI carries no C JSON parser, so the OVSDB IDL that the
# agent and the compute emulator run lexes every update in Python (~36x slower).
# Debian's python3-openvswitch ships the compiled parser: link it into the venv
# when it is built for this Python's ABI, and keep it only if it imports.
suffix=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
compiled=/usr/lib/python3/dist-packages/ovs/_json$suffix
ovs_dir=$(.venv/bin/python -c 'import os, ovs; print(os.path.dirname(ovs.__file__))')
if [ -f "$compiled" ] && [ ! -e "$ovs_dir/_json$suffix" ]; then
  ln -s "$compiled" "$ovs_dir/_json$suffix"
  .venv/bin/python -c 'import ovs._json' 2>/dev/null || rm -f "$ovs_dir/_json$suffix"
fi
