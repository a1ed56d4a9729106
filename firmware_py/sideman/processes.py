"""Child processes that never outlive the box: a JACK server we start, a box a benchmark starts."""

from __future__ import annotations

import shutil


def dies_with_parent(command: list[str], signal: str = "TERM") -> list[str]:
    """The command, wrapped so the kernel sends it `signal` when the process that started it dies,
    however it dies (SIGKILL, a timeout, a crash) — so no orphaned `jackd` or box is left behind.
    util-linux's setpriv sets PR_SET_PDEATHSIG and execs the command. Linux ties this to the
    *thread* that started the child: start long-lived children from a thread that lives as long
    (the main thread). Without setpriv the command runs as it is."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", signal, "--", *command] if setpriv else list(command)
