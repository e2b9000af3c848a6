#!/usr/bin/env bash
# Give a machine without a Docker daemon a Docker-compatible engine: Debian's podman
# serving the Docker API on a unix socket.
#
# Why: the template's CI machine has the docker CLI but no daemon, and no container
# registry is reachable. podman's API service lets the unchanged `docker build/run/exec`
# commands (and the docker Python SDK) work, so the container tests really run in CI.
# On a laptop or a GitHub runner with Docker this script does nothing.
#
# Usage:  eval "$(scripts/container-engine.sh)"
# stdout carries only `export ...` lines (for eval); progress goes to stderr.
# Idempotent: a second run finds the running service and only prints the exports.
# Needs root (apt-get, /run/podman) when it has to install or start anything.
#
# Settings (environment):
#   PODMAN_SOCKET     socket path (default /run/podman/podman.sock)
#   CONTAINERS_CONF   where to write podman's containers.conf (default
#                     ~/.config/mlops-template/containers.conf: outside any checkout, because
#                     the service outlives this script and reads the file again later)
#   ENGINE_WAIT_S     seconds to wait for the socket (default 60)
set -euo pipefail

started=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
socket=${PODMAN_SOCKET:-/run/podman/podman.sock}
conf=${CONTAINERS_CONF:-${XDG_CONFIG_HOME:-$HOME/.config}/mlops-template/containers.conf}
wait_s=${ENGINE_WAIT_S:-60}
log_dir=$root/build/containers

say() { echo "container-engine: $*" >&2; }
took() { say "$1 ($(($(date +%s) - started)) s)"; }

engine_answers() {  # the docker CLI reaches an engine through the given DOCKER_HOST ("" = default)
  if [ -n "$1" ]; then DOCKER_HOST=$1 docker info >/dev/null 2>&1; else docker info >/dev/null 2>&1; fi
}

# 1. A working Docker engine (a real daemon, or this service from an earlier run): nothing to do.
if command -v docker >/dev/null 2>&1 && engine_answers "${DOCKER_HOST:-}"; then
  took "docker info works${DOCKER_HOST:+ at $DOCKER_HOST}; nothing to do"
  [ -n "${DOCKER_HOST:-}" ] && echo "export DOCKER_HOST=$DOCKER_HOST"
  exit 0
fi
service_conf() {  # "PID CONF" of each podman service on $socket, CONF as it was started with
  local dir
  for dir in /proc/[0-9]*; do
    tr '\0' ' ' <"$dir/cmdline" 2>/dev/null | grep -q "podman system service .*$socket" || continue
    echo "${dir#/proc/} $(tr '\0' '\n' <"$dir/environ" 2>/dev/null | sed -n 's/^CONTAINERS_CONF=//p')"
  done
}
if [ -S "$socket" ] && command -v docker >/dev/null 2>&1 && engine_answers "unix://$socket"; then
  # podman reads containers.conf again for each container: a service whose file was deleted
  # (it lived in a removed checkout) answers `docker info` but cannot start containers here.
  stale=()
  # So does a service whose working folder was deleted (started from a since-removed checkout):
  # the runtime it starts inherits that folder and fails ("write child: broken pipe").
  while read -r pid used; do
    if { [ -n "$used" ] && [ ! -f "$used" ]; } || [[ "$(readlink "/proc/$pid/cwd")" == *" (deleted)" ]]; then
      stale+=("$pid")
    else
      conf=${used:-$conf}
    fi
  done < <(service_conf)
  if [ ${#stale[@]} -eq 0 ]; then
    took "podman service already answers on $socket"
    echo "export DOCKER_HOST=unix://$socket"
    [ -f "$conf" ] && echo "export CONTAINERS_CONF=$conf"
    exit 0
  fi
  say "restarting the podman service (pid ${stale[*]}): the containers.conf it started with is gone"
  kill "${stale[@]}" 2>/dev/null || true
  for _ in $(seq 1 20); do
    [ -z "$(service_conf)" ] && break
    sleep 0.5
  done
fi

# 2. Packages: podman + runc (crun rejects hybrid cgroups), debootstrap for scripts/base-image.sh.
#    The docker CLI itself: when absent, podman-docker provides a `docker` command.
packages=()
for tool in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || packages+=("${tool##*:}")
done
command -v docker >/dev/null 2>&1 || packages+=(podman-docker)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "ERROR: need root to install ${packages[*]} (run as root, or install them first)"
    exit 1
  fi
  say "installing ${packages[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$log_dir"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}"; } \
    >"$log_dir/apt.log" 2>&1; then
    say "ERROR: apt-get failed; the end of $log_dir/apt.log:"
    tail -n 20 "$log_dir/apt.log" >&2
    exit 1
  fi
  took "packages installed"
fi

# 3. containers.conf: the sandbox cannot raise rlimits, has no systemd, and crun fails on
#    its hybrid cgroups. Written every run so a changed file is corrected.
mkdir -p "$(dirname "$conf")" "$log_dir"
cat >"$conf" <<'CONF'
# Written by scripts/container-engine.sh for machines without a Docker daemon.
[containers]
# The sandbox cannot raise resource limits above its own: keep the defaults within them.
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
# No systemd on the CI machine.
cgroup_manager = "cgroupfs"
# crun rejects this machine's hybrid cgroup layout; runc works.
runtime = "runc"
CONF
export CONTAINERS_CONF=$conf

# 4. The Docker API service, detached so that it outlives this script.
mkdir -p "$(dirname "$socket")"
rm -f "$socket"
say "starting podman system service on unix://$socket (log: $log_dir/podman-service.log)"
# Started from / so that it never depends on this checkout's folders staying where they are.
(cd / && exec setsid nohup podman system service --time=0 "unix://$socket" >"$log_dir/podman-service.log" 2>&1 </dev/null) &
echo $! >"$log_dir/podman-service.pid"

for _ in $(seq 1 $((wait_s * 2))); do
  if [ -S "$socket" ] && engine_answers "unix://$socket"; then
    took "engine ready: docker CLI answers through unix://$socket"
    echo "export DOCKER_HOST=unix://$socket"
    echo "export CONTAINERS_CONF=$conf"
    exit 0
  fi
  sleep 0.5
done
say "ERROR: the podman service did not answer within ${wait_s} s; its log:"
tail -n 30 "$log_dir/podman-service.log" >&2 || true
exit 1
