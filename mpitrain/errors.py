"""User-facing errors and their exit codes (sysexits).

A `UserError` is a problem with the user's input (job file, data, checkpoint, command line)
or with the run itself (a run directory in use, a diverging objective): it is reported as one
line, without a traceback, with its exit code. Anything else that escapes is a bug and aborts
the job (exit 1 or the MPI abort status).

0 done · 1 internal error, or a rank that exited in the middle of the run · 64 usage ·
65 bad input data · 66 input missing · 69 stalled job (a rank did not reach a collective
within [job] stall_timeout) · 70 diverged (non-finite objective, gradient or weights) ·
73 cannot write output, or the run directory is in use by another run · 75 stopped by a
signal or the time limit after a checkpoint · 78 bad job file · 128+N a stop signal N that
could not be completed (a peer did not arrive within MPITRAIN_STOP_GRACE, or Ctrl-C twice).
"""

EX_SOFTWARE = 1
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_STALLED = 69
EX_DIVERGED = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78


class UserError(Exception):
    """An error in what the user gave us; `code` is the process exit status."""

    code = EX_SOFTWARE
    kind = "error"

    def __init__(self, message):
        super().__init__(message)
        self.message = str(message)

    def __str__(self):
        return self.message


class UsageError(UserError):
    code = EX_USAGE
    kind = "usage error"


class DataError(UserError):
    code = EX_DATAERR
    kind = "bad input data"


class InputMissing(UserError):
    code = EX_NOINPUT
    kind = "input missing"


class OutputError(UserError):
    code = EX_CANTCREAT
    kind = "cannot write output"


class RunDirBusy(OutputError):
    """The run directory is locked by another run (rundir.py)."""

    kind = "run directory in use"


class Diverged(UserError):
    """The objective, gradient or weights became non-finite (NaN or infinity)."""

    code = EX_DIVERGED
    kind = "diverged"


class JobError(UserError):
    code = EX_CONFIG
    kind = "bad job file"


class CheckpointError(UserError):
    """A checkpoint that cannot be used (corrupt, another job, other format)."""

    code = EX_DATAERR
    kind = "unusable checkpoint"


class Stopped(Exception):
    """Raised after a stop signal was agreed on and a checkpoint written (exit 75)."""

    code = EX_TEMPFAIL


ERROR_CLASSES = {cls.code: cls for cls in (UsageError, DataError, InputMissing, OutputError,
                                           JobError, Diverged)}
