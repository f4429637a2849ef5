"""User errors versus bugs: a UserError is printed as one line and exits 2; anything else is a bug."""
from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """A mistake in the user's input. The CLI prints it on one line and exits with code 2."""

    exit_code = 2


class DivergedError(UserError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""


def suggest(name: str, valid: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest valid name, so typos are cheap to fix."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
