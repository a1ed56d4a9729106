"""`sideman panic`: the last word when something may be left sounding, e.g. systemd's ExecStopPost
after the box died without its own panic. It opens every hardware MIDI output (or the ones named)
and the DIN port, and on all 16 channels releases the sustain pedal and sends All Notes Off and
All Sound Off."""

from __future__ import annotations

import logging

from sideman import messages as mm
from sideman.ports.contract import PortError
from sideman.ports.rtmidi_ports import (DEFAULT_HARDWARE_PATTERN, PortLister, RtMidiOutput, choose_backend,
                                        hardware_ports, matching_ports)

log = logging.getLogger("sideman.panic")


def panic_messages() -> list[tuple[int, int, int]]:
    out = []
    for channel in range(16):
        out += [mm.control_change(channel, mm.CC_SUSTAIN, 0), mm.control_change(channel, mm.CC_ALL_NOTES_OFF, 0),
                mm.control_change(channel, mm.CC_ALL_SOUND_OFF, 0)]
    return out


def panic_everything(backend: str = "auto", patterns: list[str] | None = None, din: str | None = None) -> list[str]:
    """Send the panic to every chosen output; returns the outputs reached. Never starts a JACK
    server of its own (nothing could be sounding on one that was not running)."""
    reached = []
    try:
        chosen = choose_backend(backend, start_private_jack=False)
    except PortError as exc:
        log.info("no MIDI backend for the panic: %s", exc)
        chosen = None
    if chosen is not None:
        lister = PortLister(chosen)
        try:
            names = lister.destinations()
            if patterns:
                targets = [n for pattern in patterns for n in matching_ports(names, pattern)]
            else:
                targets = hardware_ports(names, DEFAULT_HARDWARE_PATTERN[chosen.name])
            for name in dict.fromkeys(targets):
                try:
                    port = RtMidiOutput(chosen, "sideman-panic", connect_to=name)
                except PortError as exc:
                    log.warning("panic: %s", exc)
                    continue
                for message in panic_messages():
                    port.send(message)
                port.close()
                reached.append(name)
        finally:
            lister.close()
            chosen.close()
    if din == "auto":
        from sideman.box import resolve_din

        din = resolve_din(din, log.info)
    if din:
        from sideman.ports.din_port import DinPort

        try:
            with DinPort(din) as port:
                for message in panic_messages():
                    port.send(message)
            reached.append(din)
        except (PortError, OSError) as exc:
            log.warning("panic: DIN %s: %s", din, exc)
    return reached
