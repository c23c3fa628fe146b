#!/usr/bin/env bash
# Stop what slurm-up.sh started (by recorded PID, checked against /proc/<pid>/comm), cancelling
# jobs first. Daemons it did not start are left alone.
set -uo pipefail
STATE=${SLURM_STATE:-/run/merge2mix-slurm}
command -v scancel >/dev/null && scancel --user=root >/dev/null 2>&1
stop() {  # stop <name>
  local f="$STATE/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -r "/proc/$pid/comm" ] && [ "$(cat /proc/$pid/comm)" = "$1" ]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f"
}
stop slurmd; stop slurmctld; stop slurmdbd; stop mariadbd; stop munged
echo "slurm-down: stopped"
