#!/usr/bin/env bash
# Start or stop the one-node test cluster of .ci/slurm.conf (as root):
#   bash .ci/slurm.sh install   apt-get install Debian's Slurm (slurmctld, slurmd, slurm-client) and munge, if missing
#   bash .ci/slurm.sh start     munged + slurmctld + slurmd, then wait until the node is idle
#   bash .ci/slurm.sh stop      end the daemons this script started, and wait until they are gone
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
conf=/etc/slurm/slurm.conf
# The daemons are started with these exact command lines, so that `stop` finds them even when their pid
# files are gone (a daemon removes its own at exit; /run may have been cleaned): pgrep -fx patterns.
ctld_cmd="slurmctld -f $conf"
slurmd_cmd="slurmd -f $conf -N localhost"
munged_cmd="munged --key-file=/etc/munge/munge.key"

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
  cp "$here/slurm.conf" "$conf"
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
  if ! munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- $munged_cmd
  fi
  if ! scontrol ping 2>/dev/null | grep -q UP; then
    $ctld_cmd
  fi
  if ! alive /run/classbench-slurm/slurmd.pid && [ -z "$(pgrep -fx "$slurmd_cmd")" ]; then
    $slurmd_cmd
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
  [ -s "$1" ] && running "$(cat "$1")"
}

running() {  # the process exists and has not exited (an exited daemon stays a zombie until init reaps it)
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [ -n "$state" ] && [ "${state:0:1}" != Z ]
}

daemon_pids() {  # $1: slurmd, slurmctld or munged. Its pid file (if it names that program), else its command line
  local pidfile cmd pid
  case "$1" in
    slurmd) pidfile=/run/classbench-slurm/slurmd.pid cmd="$slurmd_cmd" ;;
    slurmctld) pidfile=/run/classbench-slurm/slurmctld.pid cmd="$ctld_cmd" ;;
    munged) pidfile=/run/munge/munged.pid cmd="$munged_cmd" ;;
  esac
  if alive "$pidfile"; then
    pid="$(cat "$pidfile")"
    # a stale pid file may name a pid that another program has since been given
    if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$1" ]; then echo "$pid"; fi
  fi
  pgrep -fx "$cmd" || true
}

end_processes() {  # SIGTERM (slurmctld saves its state), up to 10 s, then SIGKILL; wait until init has reaped them
  local pids="$*" pid left=""
  [ -n "$pids" ] || return 0
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 100); do
    left=""
    for pid in $pids; do if running "$pid"; then left="$left $pid"; fi; done
    [ -n "$left" ] || break
    sleep 0.1
  done
  if [ -n "$left" ]; then
    echo "slurm.sh: killing daemons that ignored SIGTERM:$left" >&2
    kill -KILL $left 2>/dev/null || true
  fi
  for _ in $(seq 1 50); do  # so that a pgrep right after `stop` sees nothing, not even zombies
    left=""
    for pid in $pids; do if [ -n "$(ps -o pid= -p "$pid" 2>/dev/null)" ]; then left=1; fi; done
    [ -n "$left" ] || break
    sleep 0.1
  done
}

stop() {
  scancel --user=root >/dev/null 2>&1 || true
  # Slurm first, munged last: the Slurm daemons authenticate through it while they shut down.
  end_processes $( { daemon_pids slurmd; daemon_pids slurmctld; } | sort -u)
  end_processes $(daemon_pids munged | sort -u)
}

"${1:?usage: slurm.sh install|start|stop}"
