"""torchrun for the job worker, reporting how it ended as typed events (:mod:`daik_core.events`)::

    python -m daik_core.engine.launch --events FILE [torchrun options] -m daik_core.cli train SPEC ...

runs ``torch.distributed.run`` (torchrun) in this process with the arguments after ``--events FILE``, and:

- when a rank fails, writes one :class:`~daik_core.events.RankExit` per failed rank to FILE: its exit code
  (negative: the signal that killed it, e.g. -9 for the kernel's OOM killer), the message of its
  torchelastic error file (``<log-dir>/<run>/attempt_0/<rank>/error.json``, which ``daik train`` writes
  when training raises) and whether torchrun took it for the root cause, then exits 1. torchrun itself
  only logs a rank killed by a signal (its own error file, ``TORCHELASTIC_ERROR_FILE``, is written only
  for a rank that left an error file), so without these events the worker would see an exit code of 1;
- when it is stopped by a signal (SIGTERM: torchrun forwards it to the ranks, which checkpoint and stop
  together, and waits for them), exits ``128 + signal`` as a single process does (torchrun exits 1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from daik_core.events import EventWriter, RankExit

__all__ = ["main"]

USAGE = "usage: python -m daik_core.engine.launch --events FILE [torchrun arguments]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "--events":
        print(USAGE, file=sys.stderr)
        return 2
    events, torchrun_args = args[1], args[2:]

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(torchrun_args)
    except ChildFailedError as err:
        first, _ = err.get_first_failure()
        with EventWriter(events) as writer:
            for rank, failure in sorted(err.failures.items()):
                writer.write(
                    RankExit(
                        rank=rank,
                        exitcode=failure.exitcode,
                        message=_message(failure.message) if os.path.isfile(failure.error_file) else None,
                        first=rank == first,
                    )
                )
        return 1
    except SignalException as err:
        return 128 + int(err.sigval)
    return 0


def _message(message: object) -> str | None:
    """The first line of the message of a rank's error file (``{"message": "Type: text", ...}``)."""
    if isinstance(message, dict):
        message = message.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    return message.strip().splitlines()[0][:1000]


if __name__ == "__main__":
    sys.exit(main())
