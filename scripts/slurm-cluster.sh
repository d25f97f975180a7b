#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying and testing profiles/slurm without a cluster.
#
#   bash scripts/slurm-cluster.sh install       # Debian packages slurm-wlm and munge (needs root)
#   bash scripts/slurm-cluster.sh start DIR     # state and logs in DIR; starts munged, slurmctld, slurmd
#   bash scripts/slurm-cluster.sh stop DIR      # stops what start started, by its pid files
#
# The configuration goes to /etc/slurm (slurm.conf, gres.conf), where every SLURM command looks, including the
# `srun` that Snakemake runs inside each job with SLURM_* variables cleared; start refuses to replace a
# configuration it did not write, and stop removes what it wrote. The node has two partitions, `cpu` (default)
# and `gpu`, and SLURM_FAKE_GPUS (default 2) GPUs whose device files are plain files: GPU requests are scheduled
# and accounted as on a GPU cluster while the jobs run on the CPU.
set -euo pipefail

ETC=/etc/slurm
MARK="# written by detoxlab scripts/slurm-cluster.sh"

cmd=${1:?usage: slurm-cluster.sh install|start DIR|stop DIR}

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return 0; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
}

start() {
  local dir host cpus mem gpus
  dir=$(realpath -m "$1")
  mkdir -p "$dir/state" "$dir/spool"
  host=$(hostname -s)
  cpus=$(nproc)
  # leave the operating system a quarter of the memory; slurmd refuses a node that claims more than it has
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 3 / 4 ))
  gpus=${SLURM_FAKE_GPUS:-2}
  if [ -f "$ETC/slurm.conf" ] && ! grep -qF "$MARK" "$ETC/slurm.conf"; then
    echo "slurm-cluster: $ETC/slurm.conf belongs to another cluster; not replacing it" >&2
    return 1
  fi
  mkdir -p "$ETC"
  cat > "$ETC/slurm.conf" <<EOF
$MARK (state: $dir)
ClusterName=detoxlab
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
CredType=cred/munge
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=3600
KillWait=5
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES State=UP MaxTime=INFINITE
PartitionName=gpu Nodes=ALL State=UP MaxTime=INFINITE
EOF
  # slurmd counts a GPU per device file; plain files stand in for /dev/nvidiaN
  mkdir -p "$dir/dev"
  echo "$MARK" > "$ETC/gres.conf"
  for i in $(seq 0 $((gpus - 1))); do
    touch "$dir/dev/gpu$i"
    echo "NodeName=$host Name=gpu File=$dir/dev/gpu$i" >> "$ETC/gres.conf"
  done
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$dir/munged.started"
    for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
  fi
  # from here on, a failure stops whatever did start and removes the configuration
  trap 'stop "$dir"' ERR
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
      trap - ERR
      return 0
    fi
    sleep 0.5
  done
  echo "slurm-cluster: the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
  trap - ERR
  stop "$dir"
  return 1
}

stop() {
  local dir pid
  dir=$(realpath -m "$1")
  for name in slurmd slurmctld; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true  # a daemon still retrying its registration ignores SIGTERM
      rm -f "$dir/$name.pid"
    fi
  done
  for name in slurm.conf gres.conf; do
    if [ -f "$ETC/$name" ] && grep -qF "$MARK" "$ETC/$name"; then rm -f "$ETC/$name"; fi
  done
  if [ -f "$dir/munged.started" ]; then
    kill "$(cat /run/munge/munged.pid 2>/dev/null)" 2>/dev/null || true
    rm -f "$dir/munged.started"
  fi
}

case "$cmd" in
  install) install ;;
  start) start "${2:?usage: slurm-cluster.sh start DIR}" ;;
  stop) stop "${2:?usage: slurm-cluster.sh stop DIR}" ;;
  *) echo "usage: slurm-cluster.sh install|start DIR|stop DIR" >&2; exit 2 ;;
esac
