#!/usr/bin/env bash
# Build a Python base image from Debian packages, for engines that cannot pull images.
#
# Why: the template's CI machine reaches package registries but no container registry, so
# `python:3.11-slim` cannot be pulled. debootstrap assembles a minimal Debian root with
# Debian's Python 3.11 from the apt mirror, trimmed to about the size of the official slim
# image, and the engine imports it as localhost/python-base:3.11. The project's Dockerfile
# takes it through `--build-arg BASE_IMAGE=localhost/python-base:3.11`.
#
# Usage:  scripts/base-image.sh            (after: eval "$(scripts/container-engine.sh)")
# Skips the build when the image already exists. Needs root (debootstrap).
#
# Settings (environment):
#   BASE_IMAGE     tag to create (default localhost/python-base:3.11)
#   DEBIAN_MIRROR  apt mirror URL (default: the first `URIs:` line of the machine's apt sources)
#   DEBIAN_SUITE   Debian release whose python3 is wanted (default bookworm: Python 3.11)
#   REBUILD=1      build even if the image exists
set -euo pipefail

started=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${BASE_IMAGE:-localhost/python-base:3.11}
suite=${DEBIAN_SUITE:-bookworm}
work=$root/build/base-image

say() { echo "base-image: $*" >&2; }
took() { say "$1 ($(($(date +%s) - started)) s)"; }

# The engine that stores images: podman directly when installed (same storage as its API
# service), otherwise the docker CLI.
if command -v podman >/dev/null 2>&1; then
  exists() { podman image exists "$image"; }
  import() { podman import --quiet - "$image"; }
elif command -v docker >/dev/null 2>&1; then
  exists() { docker image inspect "$image" >/dev/null 2>&1; }
  import() { docker import - "$image"; }
else
  say "ERROR: neither podman nor docker is installed (run scripts/container-engine.sh first)"
  exit 1
fi

if [ "${REBUILD:-0}" != 1 ] && exists; then
  took "$image already exists; nothing to do (REBUILD=1 to rebuild)"
  exit 0
fi

mirror_from_apt() {  # the machine's own mirror: deb822 sources first, then the one-line format
  local sources=/etc/apt/sources.list.d/debian.sources
  if [ -r "$sources" ]; then
    awk '/^URIs:/ {print $2; exit}' "$sources"
  elif [ -r /etc/apt/sources.list ]; then
    awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list
  fi
}
mirror=${DEBIAN_MIRROR:-$(mirror_from_apt)}
if [ -z "$mirror" ]; then
  say "ERROR: no Debian mirror: set DEBIAN_MIRROR or configure apt (/etc/apt/sources.list.d/debian.sources)"
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  say "ERROR: debootstrap is not installed (apt-get install debootstrap, or run scripts/container-engine.sh)"
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  say "ERROR: debootstrap needs root"
  exit 1
fi

rootfs=$work/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs"
say "debootstrap $suite (minbase + python3, python3-venv, ca-certificates) from $mirror"
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
  say "ERROR: debootstrap failed; the end of $work/debootstrap.log:"
  tail -n 20 "$work/debootstrap.log" >&2
  exit 1
fi
took "root filesystem ready ($(du -sm "$rootfs" | cut -f1) MB)"

# Trim what no container needs: package caches and lists, docs, man pages, translations
# (272 MB -> ~130 MB). Licences in usr/share/common-licenses and doc copyright files stay.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/{locale,man,info}/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
# A container image carries no machine identity, and apt must work again after `apt-get update`.
: >"$rootfs/etc/machine-id"
mkdir -p "$rootfs/var/lib/apt/lists/partial"
python=$(chroot "$rootfs" python3 --version 2>&1)
took "trimmed to $(du -sm "$rootfs" | cut -f1) MB ($python); importing as $image"

tar --numeric-owner -C "$rootfs" -c . | import >/dev/null
rm -rf "$rootfs"
took "$image built"
