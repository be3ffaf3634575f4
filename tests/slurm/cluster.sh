#!/usr/bin/env bash
# A single-node Slurm cluster for medtl's tests (Debian's slurmctld, slurmd and munge).
#
#   tests/slurm/cluster.sh start DIR   configure and start munged, slurmctld and slurmd under DIR
#                                      (prints the line SLURM_CONF=DIR/slurm.conf on success)
#   tests/slurm/cluster.sh stop DIR    stop the three daemons started under DIR
#   tests/slurm/cluster.sh install     apt-get the packages when they are missing
#
# Everything lives under DIR: slurm.conf, a munge key generated here, state, spool, logs and
# the munge socket; nothing in /etc is touched. Clients find the cluster through
# SLURM_CONF=DIR/slurm.conf. One node (this machine: its cores and memory), one `debug`
# partition, free ports, no accounting database (finished jobs stay visible to
# `scontrol show job` for MinJobAge seconds).
set -euo pipefail

need=(slurmctld slurmd munged sbatch squeue scontrol scancel srun)

install() {
  missing=0
  for c in "${need[@]}"; do command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing=1; done
  [ "$missing" -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null 2>&1)
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1"
  mkdir -p "$dir"/{state,spool,log,munge}
  dir="$(cd "$dir" && pwd)"
  chmod 700 "$dir/munge"
  local host cpus mem p1 p2
  host="$(hostname -s)"
  # one CPU slot more than the cores: the overrunning test job holds one slot for its whole
  # minute, and the job-array test should still run its tasks two at a time (they mostly
  # wait on kernel starts); config_overrides lets slurmd accept the count
  cpus="$(( $(nproc) + 1 ))"
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  [ "$mem" -lt 512 ] && mem=512
  p1="$(free_port)"; p2="$(free_port)"
  while [ "$p2" = "$p1" ]; do p2="$(free_port)"; done

  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  /usr/sbin/munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"

  cat > "$dir/slurm.conf" <<CONF
ClusterName=medtl-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$p1
SlurmdPort=$p2
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2048
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=86400
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$dir/slurm.conf"
  /usr/sbin/slurmctld -f "$SLURM_CONF"
  /usr/sbin/slurmd -f "$SLURM_CONF"
  for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.5
  done
  echo "the test cluster did not come up; logs in $dir/log" >&2
  tail -n 20 "$dir"/log/*.log >&2 || true
  stop "$dir"
  return 1
}

stop() {
  local dir="$1"
  for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    for _ in $(seq 1 50); do [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null || break; sleep 0.1; done
  done
}

case "${1:-}" in
  install) install ;;
  start) [ $# -eq 2 ] || { echo "usage: $0 start DIR" >&2; exit 2; }; install; start "$2" ;;
  stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
