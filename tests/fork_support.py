"""Running a check in a forked child (as a gunicorn worker forked after --preload) and reading its answer."""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable


def in_forked_child(check: Callable[[], str]) -> str:
    """Fork, run ``check`` in the child and return the text it returned; fail if it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code, answer = 1, "the check did not finish"
        try:
            os.close(read_end)
            answer, code = str(check()), 0
        except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
            answer = traceback.format_exc()
        finally:
            # whatever happens, the child must never return into the parent's test run
            with contextlib.suppress(BaseException):
                os.write(write_end, answer.encode("utf-8", "replace"))
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answer = pipe.read()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, answer
    return answer
