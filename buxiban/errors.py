"""Exception types the library raises. Only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class BuxibanError(Exception):
    """Base class: every error the library raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located precisely enough to fix without searching.

    `where` is `file:line` for data and the dotted key for configs; `field` is the path inside
    the record (`messages[2].role`); `fix` says what to do about it.
    """

    where: str
    message: str
    field: str = ""
    fix: str = ""

    def __str__(self) -> str:
        head = f"{self.where}: {self.field} {self.message}" if self.field else f"{self.where}: {self.message}"
        return f"{head} ({self.fix})" if self.fix else head


KEPT_PROBLEMS = 10_000  # about 3 MB of problems, whatever the number of bad lines


class Problems(list):
    """The first KEPT_PROBLEMS problems with their places, and a count of all of them: checking a file
    of a million bad lines holds ten thousand problems, not a million (memory flat in the bad lines).
    len() is the count of all, so every "N problem(s)" message stays true; iterating gives the kept."""

    def __init__(self, problems=(), keep: int = KEPT_PROBLEMS):
        super().__init__()
        self.keep, self.total = keep, 0
        self.extend(problems)

    def append(self, problem: Problem) -> None:
        self.total += 1
        if super().__len__() < self.keep:
            super().append(problem)

    def extend(self, problems) -> None:
        for problem in problems:
            self.append(problem)

    def __len__(self) -> int:
        return self.total

    @property
    def unlisted(self) -> int:
        return self.total - super().__len__()


class ProblemsError(BuxibanError):
    """Carries every problem found (up to KEPT_PROBLEMS of them, and the count of the rest), so that a
    user fixes them all in one pass."""

    def __init__(self, summary: str, problems: list[Problem]):
        self.summary = summary
        self.problems = problems if isinstance(problems, Problems) else Problems(problems)
        listed = "".join(f"\n  {p}" for p in self.problems)
        more = f"\n  … and {self.problems.unlisted} more" if self.problems.unlisted else ""
        super().__init__(summary + listed + more)


class DataError(ProblemsError):
    """The training or test data is malformed."""


class ConfigError(ProblemsError):
    """The run configuration has unknown keys, wrong types or bad values."""


class ModelLoadError(BuxibanError):
    """A base model could not be found or loaded."""


class RunDirError(BuxibanError):
    """A run directory is missing, incomplete or not a buxiban run."""


class AdapterError(BuxibanError):
    """An adapter name is invalid, unknown, taken, or points at an unusable run."""


class PlanError(BuxibanError):
    """A plan cannot be made: unknown hosted model, unreadable price file, unusable inputs."""


class ServeError(BuxibanError):
    """A request the server refuses. Carries the HTTP status and the OpenAI error fields, so the
    server answers the way the official SDK expects to parse."""

    status = 400
    code = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None):
        self.param = param
        super().__init__(message)


class RagError(BuxibanError):
    """A document, embedding model or retrieval index cannot be read, built or queried."""


class EndpointError(BuxibanError):
    """An OpenAI-compatible endpoint (an extra eval system or the judge) is misconfigured or failed."""


class MigrateError(BuxibanError):
    """A hosted fine-tuning job cannot be brought home: the source refused, failed or answered
    something unusable, or its data does not pass the checks. Nothing was left half-written."""
