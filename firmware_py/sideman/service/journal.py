"""Logging for a terminal or for journald.

On a terminal: what `sideman` always did (plain "LEVEL logger: message" lines on stderr).
Under systemd ($JOURNAL_STREAM or $INVOCATION_ID set, or `sideman run --service`): straight into
the journal through systemd-python's JournalHandler (structured fields: PRIORITY, LOGGER,
THREAD_NAME, CODE_FILE/LINE, SYSLOG_IDENTIFIER=sideman) when it imports and journald's socket is
there; else stderr lines without timestamps (journald adds its own) that start with the
syslog priority prefix "<N>", which journald turns into the entry's PRIORITY.

Under systemd, faulthandler is also enabled: when the watchdog fires (SIGABRT, systemd's default
WatchdogSignal) every thread's Python stack goes to stderr, hence to the journal, before the process
dies — the stall shows up in `journalctl -u sideman` with the line that hung."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"
TERMINAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
IDENTIFIER = "sideman"

# logging level -> syslog priority (sd-daemon.h: SD_CRIT <2>, SD_ERR <3>, SD_WARNING <4>, ...)
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def under_systemd(environ=None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def syslog_priority(levelno: int) -> int:
    for level, priority in _PRIORITY:
        if levelno >= level:
            return priority
    return 7  # debug


class PriorityPrefixFormatter(logging.Formatter):
    """'<3>sideman.box: message' — journald reads the prefix as the priority (SyslogLevelPrefix=)."""

    def __init__(self):
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{syslog_priority(record.levelno)}>"
        # A traceback spans lines; each becomes its own journal entry, so each gets the prefix.
        return "\n".join(prefix + line for line in text.split("\n"))


def _journal_handler() -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    if not os.path.exists(JOURNAL_SOCKET):
        return None
    return JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)


def setup_logging(service: bool = False, verbose: bool = False, use_journal: bool = True) -> str:
    """Configure the root logger; returns what was chosen: "journal", "stderr-journald" or
    "terminal". `use_journal=False` skips JournalHandler even when it is available."""
    level = logging.DEBUG if verbose else logging.INFO
    if not (service or under_systemd()):
        # No force: a host that set up logging already (a test runner, an embedding app) keeps it.
        logging.basicConfig(level=level, format=TERMINAL_FORMAT, stream=sys.stderr)
        return "terminal"
    handler = _journal_handler() if use_journal else None
    chosen = "journal"
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PriorityPrefixFormatter())
        chosen = "stderr-journald"
    logging.basicConfig(level=level, handlers=[handler], force=True)
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError):  # stderr closed or not a real file
        pass
    return chosen
