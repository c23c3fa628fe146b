#!/usr/bin/env bash
# Bring up a single-node Slurm cluster on localhost for the tests (root, no systemd): munge,
# MariaDB + slurmdbd (accounting: the executor plugin polls sacct), slurmctld, slurmd, with
# SLURM_FAKE_GPUS fake GPUs. Every daemon it starts is recorded in $STATE/<name>.pid for
# slurm-down.sh. Installs the Debian packages when they are missing. Exit 3 = cannot run here.
set -euo pipefail
STATE=${SLURM_STATE:-/run/merge2mix-slurm}
GPUS=${SLURM_FAKE_GPUS:-1}
CPUS=${SLURM_CPUS:-$(nproc)}
MEM=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 512 ))

[ "$(id -u)" = 0 ] || { echo "slurm-up: needs root" >&2; exit 3; }
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  command -v apt-get >/dev/null || { echo "slurm-up: no apt-get to install Slurm" >&2; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  (apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client slurmdbd mariadb-server \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client slurmdbd mariadb-server; }) \
    >/tmp/merge2mix-slurm-apt.log 2>&1 || { echo "slurm-up: apt-get install failed (see /tmp/merge2mix-slurm-apt.log)" >&2; exit 3; }
fi

mkdir -p "$STATE" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
install -d -o munge -g munge -m 0755 /run/munge
install -d -o mysql -g mysql /run/mysqld

wait_for() {  # wait_for <seconds> <command...>
  local t=$1; shift
  for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "slurm-up: timed out waiting for: $*" >&2; return 1
}
started() { echo "$2" > "$STATE/$1.pid"; }

gres_node=""; gres_types=""
: > /etc/slurm/gres.conf
devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
if [ "$GPUS" -gt 0 ]; then
  gres_node=" Gres=gpu:$GPUS"; gres_types="GresTypes=gpu"
  for i in $(seq 0 $((GPUS - 1))); do echo "NodeName=localhost Name=gpu File=${devs[$i]}" >> /etc/slurm/gres.conf; done
fi
cat > /etc/slurm/slurm.conf <<CONF
# written by merge2mix tests/slurm/slurm-up.sh: a single-node test cluster
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( MEM / CPUS / 2 ))
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# keep the plugin's --comment rule_<name> in sacct (the test maps jobs to rules with it)
AccountingStoreFlags=job_comment
# record GPU requests in sacct (not tracked by default)
AccountingStorageTRES=gres/gpu
$gres_types
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN$gres_node
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf

[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null 2>&1 || true
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  wait_for 10 sh -c 'munge -n | unmunge'
  started munged "$(cat /run/munge/munged.pid)"
fi
if ! mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null 2>&1
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
    --pid-file=/run/mysqld/mysqld.pid </dev/null >/var/log/slurm/mariadb.log 2>&1 &
  wait_for 30 mariadb-admin --socket=/run/mysqld/mysqld.sock ping
  started mariadbd "$(cat /run/mysqld/mysqld.pid)"
fi
mariadb --socket=/run/mysqld/mysqld.sock -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
if ! pgrep -x slurmdbd >/dev/null; then
  /usr/sbin/slurmdbd
  wait_for 30 test -s /run/slurmdbd.pid
  started slurmdbd "$(cat /run/slurmdbd.pid)"
fi
wait_for 30 sacctmgr -n show cluster
sacctmgr -i add cluster ci >/dev/null 2>&1 || true
sacctmgr -i add account ci Cluster=ci >/dev/null 2>&1 || true
sacctmgr -i add user root Account=ci Cluster=ci >/dev/null 2>&1 || true
if ! pgrep -x slurmctld >/dev/null; then
  # -c: start clean. Jobs saved by an earlier controller (a test run that was killed) would
  # otherwise come back and hold the node.
  /usr/sbin/slurmctld -c
  wait_for 30 scontrol ping
  started slurmctld "$(cat /run/slurmctld.pid)"
fi
if ! pgrep -x slurmd >/dev/null; then
  /usr/sbin/slurmd -N localhost
  wait_for 30 test -s /run/slurmd.pid
  started slurmd "$(cat /run/slurmd.pid)"
fi
for _ in $(seq 75); do
  state=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
  case "$state" in idle|mix|alloc) break ;; esac
  case "$state" in down*|drain*|inval*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;; esac
  sleep 0.2
done
case "$(sinfo -h -n localhost -o %t)" in idle|mix|alloc) ;; *) echo "slurm-up: node not up: $(sinfo -h -n localhost -o '%t %E')" >&2; exit 1 ;; esac
# mix/alloc: a cluster we found running has other jobs; ours queue behind them.
echo "slurm-up: cluster ci up (node localhost: $CPUS CPUs, $MEM MB, $GPUS fake GPUs)"
