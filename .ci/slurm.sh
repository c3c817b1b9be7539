#!/usr/bin/env bash
# Start or stop the one-node test cluster of .ci/slurm.conf (as root):
#   bash .ci/slurm.sh install   apt-get install Debian's Slurm (slurmctld, slurmd, slurm-client) and munge, if missing
#   bash .ci/slurm.sh start     munged + slurmctld + slurmd, then wait until the node is idle
#   bash .ci/slurm.sh stop      end the daemons this script started
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

install() {
  if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # slurm-wlm's daemons and client, without its optional plugins and their libraries (hdf5, rrd, ...)
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

start() {
  mkdir -p /etc/slurm /var/spool/classbench-slurm/ctld /var/spool/classbench-slurm/d \
           /run/classbench-slurm /var/log/classbench-slurm /run/munge /var/log/munge /var/lib/munge
  cp "$here/slurm.conf" /etc/slurm/slurm.conf
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
  if ! munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- munged
  fi
  if ! scontrol ping 2>/dev/null | grep -q UP; then
    slurmctld
  fi
  if ! alive /run/classbench-slurm/slurmd.pid; then
    slurmd -N localhost
  fi
  for _ in $(seq 1 60); do
    state="$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)"
    case "$state" in
      idle|mix|alloc) return 0 ;;
      down*|drain*|drng*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  echo "slurm.sh: the node did not become idle (state: ${state:-none}); logs in /var/log/classbench-slurm" >&2
  tail -n 20 /var/log/classbench-slurm/*.log >&2 || true
  return 1
}

alive() {  # the process of a pid file is running
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop() {
  scancel --user=root >/dev/null 2>&1 || true
  for pidfile in /run/classbench-slurm/slurmd.pid /run/classbench-slurm/slurmctld.pid /run/munge/munged.pid; do
    if alive "$pidfile"; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$pidfile" || break; sleep 0.1; done
    fi
  done
}

"${1:?usage: slurm.sh install|start|stop}"
