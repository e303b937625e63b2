# Sourced by the mpitrain sbatch scripts: environment and the launch line. Edit VENV, or set
# it (and JOB, LAUNCH, MPITRAIN) with `sbatch --export=ALL,JOB=...,LAUNCH=srun ...`.
#   LAUNCH=mpiexec   mpiexec -n $SLURM_NTASKS inside the allocation (the PyPI MPICH wheel's
#                    Hydra starts its proxies through Slurm)
#   LAUNCH=srun      srun --mpi=pmi2 (Slurm's PMI-2; `--mpi=pmix` does not work with the
#                    PyPI MPICH wheel, and a plain srun with MpiDefault=none starts unconnected
#                    singletons, which mpitrain refuses)
VENV=${VENV:-$HOME/mpitrain/venv}
[ -f "$VENV/bin/activate" ] && . "$VENV/bin/activate"
JOB=${JOB:?set JOB=path/to/job.toml (sbatch --export=ALL,JOB=...)}
LAUNCH=${LAUNCH:-mpiexec}
MPITRAIN=${MPITRAIN:-python -m mpitrain}
OUT=${OUT:-}

# one OpenMP/BLAS thread pool per rank, as wide as --cpus-per-task; since Slurm 22.05 srun no
# longer inherits --cpus-per-task from the allocation: SRUN_CPUS_PER_TASK passes it on
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}
# HDF5 file locks fail on NFS and some Lustre mounts; mpitrain opens files without locks,
# this also covers h5py tools run from the same script
export HDF5_USE_FILE_LOCKING=FALSE
# progress lines are printed by rank 0 only; unbuffered so the log follows the run
export PYTHONUNBUFFERED=1

mpitrain_cmd() {  # the launch line for `run` (every start resumes: --resume auto)
  local extra=()
  [ -n "$OUT" ] && extra+=(--out "$OUT")
  case "$LAUNCH" in
    mpiexec) echo mpiexec -n "$SLURM_NTASKS" $MPITRAIN run "$JOB" --resume auto "${extra[@]}" ;;
    srun)    echo srun --mpi=pmi2 --kill-on-bad-exit=1 $MPITRAIN run "$JOB" --resume auto "${extra[@]}" ;;
    *) echo "LAUNCH must be mpiexec or srun, not '$LAUNCH'" >&2; return 64 ;;
  esac
}

log() { echo "[$(date '+%F %T')] job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0}: $*"; }
