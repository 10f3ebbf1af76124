#!/usr/bin/env bash
# Install, only when missing, the Debian packages that the end-to-end tests and
# benchmarks need.
#
#   bash scripts/install-system-deps.sh buildbot buildbot-worker prometheus chromium nginx wrk
#
# - Idempotent and fast: a package whose command is already present is not
#   touched, and apt-get is not run at all when nothing is missing.
# - Non-interactive (CI=true, no stdin): apt-get runs with
#   DEBIAN_FRONTEND=noninteractive, -y, and stdin from /dev/null.
# - Cannot install (not root, or no apt-get)? It prints, per missing package,
#   the exact command to run, and exits 0: the tests that need the package
#   fail (or skip) with their own message, which names the same command.
# - Package postinst scripts must not start system services (nginx would bind
#   port 80, prometheus 9090): while apt-get runs, a policy-rc.d that denies
#   every start is put in place unless the machine already has one, and is
#   removed afterwards. Nothing is ever stopped or killed by this script.
set -euo pipefail

usage() {
  echo "usage: bash scripts/install-system-deps.sh PACKAGE..." >&2
  echo "  packages: buildbot buildbot-worker prometheus chromium nginx wrk postgresql haproxy kubectl" >&2
}

if [ "$#" -eq 0 ]; then
  usage
  exit 2
fi

# is_present PACKAGE: whether what the tests use from PACKAGE is already here.
# Checks the commands, not dpkg, so a hand-installed binary counts too.
is_present() {
  case "$1" in
    buildbot) command -v buildbot >/dev/null 2>&1 ;;
    buildbot-worker) command -v buildbot-worker >/dev/null 2>&1 ;;
    prometheus) command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 ;;
    chromium) [ -x /usr/bin/chromium ] ;;
    # nginx lives in /usr/sbin, which a non-root PATH often lacks.
    nginx) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ;;
    wrk) command -v wrk >/dev/null 2>&1 ;;
    # Debian's server binaries live outside PATH, under /usr/lib/postgresql/<version>/bin.
    postgresql) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null 2>&1 ;;
    # Like nginx, in /usr/sbin.
    haproxy) command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] ;;
    kubectl) command -v kubectl >/dev/null 2>&1 ;;
    *) return 2 ;;
  esac
}

# debian_package PACKAGE: the Debian package that provides PACKAGE, where the names differ.
debian_package() {
  case "$1" in
    # Debian 12's kubectl (1.20) embeds a kustomize too old for deploy/kubernetes/; the unit test
    # that renders them says so, and what to install instead.
    kubectl) echo kubernetes-client ;;
    *) echo "$1" ;;
  esac
}

missing=()
for pkg in "$@"; do
  rc=0
  is_present "$pkg" || rc=$?
  case "$rc" in
    0) echo "install-system-deps: $pkg: present" ;;
    1) missing+=("$pkg") ;;
    *)
      echo "install-system-deps: unknown package '$pkg'" >&2
      usage
      exit 2
      ;;
  esac
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  why="not root"
  command -v apt-get >/dev/null 2>&1 || why="no apt-get on this machine"
  for pkg in "${missing[@]}"; do
    echo "install-system-deps: MISSING $pkg ($why, not installing); install it with:" \
      "sudo apt-get install -y $(debian_package "$pkg")"
  done
  exit 0
fi

echo "install-system-deps: installing ${missing[*]}"

# Keep services from being started by postinst scripts. Only our own file is
# removed again; an existing policy-rc.d (Docker images ship one) is left as is.
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
  if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary, from install-system-deps.sh: start no services\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
# Lock::Timeout: wait for another apt/dpkg run (a parallel CI step) instead of failing.
apt_opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# One update per run, and only because something is missing.
apt-get update -q -o DPkg::Lock::Timeout=300 </dev/null

# --no-install-recommends keeps the install small (buildbot-worker would
# otherwise pull in git, subversion, mercurial, ...; chromium a pile of fonts).
# Checked for buildbot 3.7 on Debian 12: master, worker, REST API and builds
# all work without the recommends (they are only buildbot-worker itself,
# bash-completion and VCS clients).
debian_packages=()
for pkg in "${missing[@]}"; do debian_packages+=("$(debian_package "$pkg")"); done
apt-get install "${apt_opts[@]}" --no-install-recommends "${debian_packages[@]}" </dev/null

# Report what is still missing after the install (should be nothing).
status=0
for pkg in "${missing[@]}"; do
  if is_present "$pkg"; then
    echo "install-system-deps: $pkg: installed"
  else
    echo "install-system-deps: $pkg: still missing after apt-get install" >&2
    status=1
  fi
done

# nginx: with a policy-rc.d in place dpkg does not start it; if the machine had
# no policy-rc.d and runs systemd, the unit may still be enabled for the next
# boot, which does not matter for a throwaway machine. Tell, do not act.
for pkg in "${missing[@]}"; do
  if [ "$pkg" = nginx ] && [ -e /run/nginx.pid ]; then
    echo "install-system-deps: note: a system nginx is running (pid $(cat /run/nginx.pid 2>/dev/null)), started by dpkg; tests use their own ports" >&2
  fi
done

exit "$status"
