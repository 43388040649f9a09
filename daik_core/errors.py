"""Exceptions that reach users. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class DaikError(Exception):
    """An error caused by the user's input (a file, an argument), with a message that says what to fix."""


class DataFormatError(DaikError):
    """A malformed data file: names the file, the line (1-based, when there is one) and the problem."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[type[DataFormatError], tuple[str, int | None, str]]:
        # picklable across process pools (the default would call __init__ with the message only)
        return (type(self), (self.path, self.line, self.problem))
