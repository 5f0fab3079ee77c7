#!/bin/sh
# Slurm Epilog (slurm.conf: Epilog=/path/to/slurm-epilog.sh): runs as root on each node of a job when it ends.
# Removes the Docker containers the job started with --label io.gdbench.slurm-job=$SLURM_JOB_ID. They are not in
# the job's process tree (dockerd starts them), so a cancelled or timed-out job would otherwise leave them running.
# Always exits 0: a failing Epilog makes slurmd DRAIN the node, which is worse than a leftover container.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

[ -n "${SLURM_JOB_ID:-}" ] || exit 0
command -v docker >/dev/null 2>&1 || exit 0

ids=$(timeout 30 docker ps -aq --filter "label=io.gdbench.slurm-job=${SLURM_JOB_ID}" 2>/dev/null) || exit 0
[ -n "$ids" ] || exit 0
echo "slurm-epilog: job ${SLURM_JOB_ID}: removing container(s) $(echo "$ids" | tr '\n' ' ')" >&2
# shellcheck disable=SC2086  # one argument per container id
if ! timeout 60 docker rm -f $ids >/dev/null 2>&1; then
    # docker run --rm may be removing it already ("removal ... already in progress"): only what is left matters.
    left=$(timeout 30 docker ps -aq --filter "label=io.gdbench.slurm-job=${SLURM_JOB_ID}" 2>/dev/null)
    [ -z "$left" ] || echo "slurm-epilog: job ${SLURM_JOB_ID}: could not remove $(echo "$left" | tr '\n' ' ')" >&2
fi
exit 0
