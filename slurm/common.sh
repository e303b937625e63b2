# Sourced by the mpitrain sbatch scripts: where things are, the environment, the launch line.
# Every setting comes from the environment, e.g.
#   sbatch --export=ALL,JOB=jobs/lbfgs-rt-polarity.toml,LAUNCH=srun slurm/single-node.sbatch
#
#   JOB             the job file (required; relative to the directory you submit from)
#   OUT             run directory (default: the job file's [job] out)
#   SET             extra overrides, space separated: SET="model.l2=1e-5 solver.max_iter=50"
#                   (each becomes --set KEY=VALUE; a value cannot contain a space)
#   MPITRAIN_HOME   the mpitrain checkout (default: the directory above this file)
#   VENV            the virtualenv (default: $MPITRAIN_HOME/.venv, the one `make quickstart`
#                   makes)
#   MPITRAIN_SETUP  a file sourced before anything else: `module load ...`, site settings
#   LAUNCH          mpiexec (default): `mpiexec -n $SLURM_NTASKS` inside the allocation; the
#                   mpiexec first on PATH after the venv (the PyPI MPICH wheel's Hydra, which
#                   starts its proxies through Slurm, or the site's after README's site-MPI
#                   recipe)
#                   srun: `srun --mpi=$SRUN_MPI` (default pmi2: the MPICH wheel speaks PMI-2;
#                   `--mpi=pmix` does not work with it; for a site Open MPI use what
#                   `srun --mpi=list` and the site document, often pmix)
#   MPITRAIN        the program (default: $VENV/bin/mpitrain)
#
# Errors in these settings end the job at once with one `mpitrain-slurm:` line and the
# exit code mpitrain itself would use (64 usage, 66 missing file, 78 configuration).

MPITRAIN_HOME=${MPITRAIN_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

fail() {  # $1 = exit code, rest = message
  local code=$1; shift
  echo "mpitrain-slurm: $*" >&2
  exit "$code"
}

# the module-load hook: e.g. MPITRAIN_SETUP=$HOME/mpitrain-site.sh holding
#   module load python/3.11 openmpi/4.1
if [ -n "${MPITRAIN_SETUP:-}" ]; then
  [ -r "$MPITRAIN_SETUP" ] || fail 66 "MPITRAIN_SETUP=$MPITRAIN_SETUP: no such readable file"
  . "$MPITRAIN_SETUP"
fi
# module load openmpi   # or put the site's module loads here

VENV=${VENV:-$MPITRAIN_HOME/.venv}
[ -f "$VENV/bin/activate" ] || fail 78 "no virtualenv at VENV=$VENV: run 'make quickstart'" \
  "in the checkout $MPITRAIN_HOME, or set VENV (or MPITRAIN_HOME) with sbatch --export=ALL,VENV=..."
. "$VENV/bin/activate"
MPITRAIN=${MPITRAIN:-$VENV/bin/mpitrain}
[ -n "${JOB:-}" ] || fail 64 "set JOB=path/to/job.toml (sbatch --export=ALL,JOB=...)"
[ -r "$JOB" ] || fail 66 "JOB=$JOB: no such file (relative to $PWD)"
LAUNCH=${LAUNCH:-mpiexec}
SRUN_MPI=${SRUN_MPI:-pmi2}
OUT=${OUT:-}
SET=${SET:-}

# one OpenMP/BLAS thread pool per rank, as wide as --cpus-per-task; since Slurm 22.05 srun no
# longer inherits --cpus-per-task from the allocation: SRUN_CPUS_PER_TASK passes it on
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}
# HDF5 file locks fail on NFS and some Lustre mounts; mpitrain opens files without locks,
# this also covers h5py tools run from the same script
export HDF5_USE_FILE_LOCKING=FALSE
# progress lines are printed by rank 0 only; unbuffered so the log follows the run
export PYTHONUNBUFFERED=1

case "$LAUNCH" in
  mpiexec) command -v mpiexec >/dev/null || fail 78 "LAUNCH=mpiexec but no mpiexec on PATH" \
             "(VENV=$VENV; after the site-MPI recipe, load the site's MPI module)" ;;
  srun) ;;
  *) fail 64 "LAUNCH must be mpiexec or srun, not '$LAUNCH'" ;;
esac

mpitrain_cmd() {  # the launch line of `run` into the array CMD (every start: --resume auto)
  local prog set kv
  case "$LAUNCH" in
    mpiexec) CMD=(mpiexec -n "${SLURM_NTASKS:-1}") ;;
    srun)    CMD=(srun "--mpi=$SRUN_MPI" --kill-on-bad-exit=1) ;;
  esac
  read -ra prog <<< "$MPITRAIN"
  read -ra set <<< "$SET"
  CMD+=("${prog[@]}" run "$JOB" --resume auto)
  [ -n "$OUT" ] && CMD+=(--out "$OUT")
  for kv in "${set[@]}"; do CMD+=(--set "$kv"); done
}

log() { echo "[$(date '+%F %T')] job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0}: $*"; }

launch() {  # run CMD and wait for it; sets RC (its exit status) and GOT_TERM (1: we got TERM)
  # The launcher runs in the background so that this shell takes signals while it waits, and
  # forwards them: USR1 (Slurm's --signal=B:USR1 warning reaches this shell only) and TERM
  # (scancel, the time limit, preemption; Slurm sends it to every process of the job, and
  # mpitrain counts repeated deliveries of one stop once).
  "${CMD[@]}" &
  local pid=$!
  GOT_TERM=0
  trap 'log "got USR1: forwarding to the ranks"; kill -USR1 "$pid" 2>/dev/null' USR1
  trap 'GOT_TERM=1; log "got TERM: forwarding to the ranks"; kill -TERM "$pid" 2>/dev/null' TERM
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
  wait "$pid"
  RC=$?
  trap - USR1 TERM
  log "mpitrain exited with $RC"
}
