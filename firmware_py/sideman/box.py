"""The box: ports, thru, engine, sender and capture wired together, with a lifecycle that always
ends in silence (panic on stop, on signals, on output changes and on every exception path)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from sideman import messages as mm
from sideman.capture import AI, HUMAN, SessionRecorder
from sideman.clock import NS_PER_S, now_ns
from sideman.controls import CONTROLS
from sideman.engine import Engine
from sideman.midi_clock import ClockFollower, ClockGenerator
from sideman.model.voice import Voice
from sideman.play.contracts import as_partner
from sideman.ports.contract import MidiOutput, PortError
from sideman.ports.hotplug import HotplugWatcher, PortSet
from sideman.ports.rtmidi_ports import (DEFAULT_HARDWARE_PATTERN, Backend, PortLister, RtMidiInput,
                                        RtMidiOutput, choose_backend, hardware_ports, is_own_port,
                                        matching_ports)
from sideman.schedule.outputs import OutputFanout, OutputSlot
from sideman.schedule.sender import Scheduler
from sideman.schedule.shaping import SwingGrid, VelocityShape

log = logging.getLogger("sideman.box")

GIL_SWITCH_S = 0.0002
VIRTUAL_IN = ("sideman", "in")        # shows up as "sideman:in"
VIRTUAL_OUT = ("sideman-out", "out")  # shows up as "sideman-out:out"


@dataclass
class BoxConfig:
    backend: str = "auto"
    inputs: list[str] = field(default_factory=list)    # name patterns; empty: virtual port + hardware
    outputs: list[str] = field(default_factory=list)
    autoconnect: str | None = None  # regex of hardware ports to follow; None: backend default; "": off
    din: str | None = None          # serial device for 5-pin DIN in/out
    voice: str = "transformer"      # falls back to markov when the model cannot be used
    model_backend: str = "auto"     # the transformer's backend: auto (onnx when it is there), onnx, tensorrt, torch
    lookahead_s: float = 1.5        # how far ahead the transformer samples
    mode: str = "call-response"
    style: str = "mehldau"
    seed: int = 0
    clock_out: bool = False
    capture: bool = True
    hotplug_interval_s: float = 0.5
    output_latency_ms: dict[str, float] = field(default_factory=dict)  # name pattern -> ms
    # The built-in piano (sound/): auto = on while no hardware synth is connected; builtin = always;
    # none = never (a Box built in code plays no sound unless asked; `sideman run` defaults to auto).
    synth: str = "none"
    soundfont: str | None = None       # None: the best installed one
    audio_driver: str = "auto"         # auto: PipeWire/PulseAudio, a running JACK server, ALSA
    audio_file: str | None = None      # the file audio driver's output (.wav/.flac/.ogg)
    audio_period_frames: int = 128
    audio_periods: int = 2
    # auto: on JACK the player's keyboard is patched straight to the synth while nothing needs
    # filtering (ports/jack_patch.py); box: every message passes through the box.
    thru: str = "auto"
    controls: dict[str, float] = field(default_factory=lambda: {c.name: c.default for c in CONTROLS})


def resolve_din(din: str | None, announce) -> str | None:
    """--din DEVICE, or 'auto': the UART named in the panel's pin map when that device exists
    (the box's own DIN jacks), else none."""
    if din != "auto":
        return din
    from sideman.panel.pin_map import PinMapError, load_pin_map

    try:
        uart = load_pin_map().din_uart
    except PinMapError as exc:
        announce(f"warning: DIN auto: {exc}")
        return None
    return uart if os.path.exists(uart) else None


class Box:
    def __init__(self, config: BoxConfig, voice: Voice | None = None,
                 announce: Callable[[str], None] | None = None):
        self.config = config
        self.announce = announce or (lambda text: print(text, flush=True))
        c = config.controls
        self.ai_channel = int(c["ai_channel"]) - 1
        if voice is None:
            from sideman.play.voices import make_voice

            voice = make_voice(config.voice, config.mode, config.style, config.controls, config.seed,
                               warn=lambda text: self.announce(f"warning: {text}"),
                               model_backend=config.model_backend, horizon_s=config.lookahead_s)
        self.voice = voice
        self.outputs = OutputFanout()
        self.recorder = SessionRecorder() if config.capture else None
        self.clock_follower = ClockFollower()
        partner = as_partner(self.voice)
        if partner is not None:
            partner.use_clock(self.clock_follower)
        self.scheduler = Scheduler(
            self.outputs, ai_channel=self.ai_channel,
            velocity=VelocityShape(c["velocity_gamma"], int(c["velocity_floor"]), int(c["velocity_ceiling"])),
            on_played=self._record_ai)
        self.engine = Engine(self.voice, self.scheduler)
        self.backend: Backend | None = None
        self.lister: PortLister | None = None
        self.watcher: HotplugWatcher | None = None
        self.clock_generator: ClockGenerator | None = None
        self._fixed_inputs: list = []
        self._din = None
        self._output_set: PortSet | None = None
        self._builtin: OutputSlot | None = None   # the built-in piano's slot, attached or not
        self._builtin_on: bool | None = None
        self._input_sets: list[PortSet] = []
        # MIDI CC map / learn / Program Change (the panel's); mapped CCs are the box's, not the synth's.
        self.midi_controls = None
        self.patch = None   # JackPatchThru while the thru is patched by JACK
        self._stopped = threading.Event()
        self._stop_requested = threading.Event()
        self._warned_channel_clash = False
        self.saved_session = None

    # --- the thru path (input thread) ---------------------------------------------------------
    def on_human(self, message, t_ns: int, patchable: bool = True) -> None:
        """Every incoming message: straight to the outputs first, then to the listeners.
        patchable: it came in on a MIDI port that patched thru covers (not DIN)."""
        if self.midi_controls is not None and message[0] & 0xF0 in (mm.CONTROL_CHANGE, mm.PROGRAM_CHANGE) \
                and self.midi_controls.handle(message):
            return
        if not (self.clock_generator is not None and message[0] == mm.CLOCK):
            patch = self.patch
            self.outputs.send_thru(message, patched=patchable and patch is not None and patch.patched)
        if self.clock_follower.feed(message, t_ns):
            return
        if self.recorder is not None:
            self.recorder.record(HUMAN, message, t_ns)
        if message[0] < 0xF0 and (message[0] & 0x0F) == self.ai_channel and not self._warned_channel_clash:
            self._warned_channel_clash = True
            log.warning("the player is on the AI channel %d: pick another --ai-channel", self.ai_channel + 1)
        self.engine.hear(message, t_ns)

    def _record_ai(self, message, t_ns: int) -> None:
        if self.recorder is not None:
            self.recorder.record(AI, message, t_ns)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        config = self.config
        # The sender and input threads must get the interpreter within a fraction of a millisecond
        # while the engine thread samples the model (pure Python between numpy/onnxruntime calls):
        # Python's default switch interval would let the engine hold it for 5 ms at a time.
        sys.setswitchinterval(GIL_SWITCH_S)
        c = config.controls
        if c["swing_strength"] > 0:
            self.scheduler.swing = SwingGrid(now_ns(), int(60 * NS_PER_S / c["tempo_bpm"]),
                                             c["swing_ratio"], c["swing_strength"])
        self.backend = choose_backend(config.backend)
        self.announce(f"sideman: MIDI backend {self.backend.describe()}")
        self.lister = PortLister(self.backend)
        port_sets = []
        # Inputs: named ports (must exist now, reconnected when they come back), else our virtual
        # port plus whatever hardware appears.
        if config.inputs:
            self._require_matches("input", self.lister.sources(), config.inputs)
            port_sets.append(self._input_set("input", lambda names: self._match_all(names, config.inputs)))
        else:
            virtual = RtMidiInput(self.backend, VIRTUAL_IN[0], virtual_name=VIRTUAL_IN[1])
            self._fixed_inputs.append(virtual)
            self.announce(f"input : {virtual.name} (virtual)")
        if config.outputs:
            self._require_matches("output", self.lister.destinations(), config.outputs)
            self._output_set = self._output_set_for("output", lambda names: self._match_all(names, config.outputs))
            port_sets.append(self._output_set)
        else:
            slot = self._make_slot(RtMidiOutput(self.backend, VIRTUAL_OUT[0], virtual_name=VIRTUAL_OUT[1]))
            self.outputs.add(slot)
            self.announce(f"output: {slot.name} (virtual)")
        hardware = DEFAULT_HARDWARE_PATTERN[self.backend.name] if config.autoconnect is None else config.autoconnect
        if hardware and not config.inputs:
            port_sets.append(self._input_set("hardware input", lambda names: hardware_ports(names, hardware)))
        if hardware and not config.outputs:
            self._output_set = self._output_set_for("hardware output", lambda names: hardware_ports(names, hardware))
            port_sets.append(self._output_set)
        din = resolve_din(config.din, self.announce)
        if din:
            from sideman.ports.din_port import DinPort

            try:
                self._din = DinPort(din)
            except PortError:
                if config.din != "auto":
                    raise
                # The box's own jacks: a UART that will not open must not stop the music (the
                # service would restart forever); USB MIDI still works.
                self.announce(f"warning: DIN {din} not available; playing on USB/virtual MIDI only")
            else:
                # DIN is no JACK port: the box passes its notes to every output itself.
                self._din.set_receiver(lambda message, t_ns: self.on_human(message, t_ns, patchable=False))
                self.outputs.add(self._make_slot(self._din))
                self.announce(f"DIN   : {din} (in and out, 31250 baud)")
        self._open_builtin_piano()
        self.watcher = HotplugWatcher(port_sets, config.hotplug_interval_s)
        for port in self._fixed_inputs:
            port.set_receiver(self.on_human)
        self.watcher.reconcile_now()
        self._follow_hardware_synths()
        self.patch = self._start_patched_thru()
        self.scheduler.start()
        self.engine.start()
        if config.clock_out:
            self.clock_generator = ClockGenerator(self.outputs.send, c["tempo_bpm"])
            self.clock_generator.start()
        self.watcher.start()
        self.announce(f"voice : {self.voice.name} on channel {self.ai_channel + 1}")

    def stop(self) -> None:
        """Idempotent. Whatever happened, every note this box sent ends before the ports close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._stop_requested.set()
        if self.watcher is not None:
            self.watcher.stop()
        for port in self._all_inputs():
            port.set_receiver(None)  # nothing new comes in while we wind down
        if self.patch is not None:
            self.patch.stop()   # the keyboard is no longer patched to the synth
        self.engine.stop()
        if self.clock_generator is not None:
            self.clock_generator.stop()
        self.scheduler.stop()  # panics the AI channel
        for slot in self.outputs.slots:
            # The player's held notes too: their note-offs would never reach us again.
            slot.release()
        # Outputs close first (each lets its last messages leave), then inputs: on JACK, closing
        # a client while another's messages wait for the next cycle garbles them.
        for slot in self.outputs.slots:
            if slot.port is not self._din:
                slot.close()
        if self._builtin is not None:
            self._builtin.close()  # also when detached (a hardware synth took over); idempotent
        for port in self._all_inputs():
            port.close()
        if self.lister is not None:
            self.lister.close()
        if self.backend is not None:
            self.backend.close()
        engine = self.engine
        if engine.shed or engine.dropped:
            self.announce(f"the voice fell behind: {engine.shed} late notes shed, {engine.dropped} events "
                          f"dropped (thru unaffected)")
        if self.recorder is not None:
            try:
                self.saved_session = self.recorder.save()
            except OSError as exc:
                log.error("could not save the session capture: %s", exc)
            if self.saved_session:
                self.announce(f"session saved: {self.saved_session}")

    def _all_inputs(self) -> list:
        inputs = list(self._fixed_inputs) + [port for port_set in self._input_sets for port in port_set.connected.values()]
        if self._din is not None:
            inputs.append(self._din)
        return inputs

    def run_until_stopped(self, ready_text: str = "ready: play something (Ctrl-C to stop)",
                          on_started: Callable[[], None] | None = None,
                          on_stopping: Callable[[], None] | None = None) -> int:
        """Start, block until SIGINT/SIGTERM, stop. Returns a process exit code. on_started runs
        once the box plays (the panel, systemd READY); on_stopping before it winds down."""
        # The handler only raises a flag. Setting the Event from it could deadlock: the handler runs
        # on this thread, possibly while Event.wait() holds the Event's (non-reentrant) lock; a box
        # given SIGTERM twice under load hung that way, with its JACK clients still open.
        signalled = []
        previous = {sig: signal.signal(sig, lambda *_: signalled.append(True)) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if on_started is not None:
                on_started()
            self.announce(ready_text)
            while not (signalled or self._stop_requested.is_set()):
                time.sleep(0.05)
            return 0
        finally:
            if on_stopping is not None:
                try:
                    on_stopping()
                except Exception:
                    log.exception("stopping the panel/service failed; stopping the box anyway")
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def select_outputs(self, patterns: list[str]) -> list[str]:
        """Re-point the box at other synths now. Outputs left behind get their notes turned off
        (and CC123) before they are closed. Returns the outputs connected afterwards."""
        if self._output_set is None or self.watcher is None:
            raise PortError("outputs are fixed for this run (no hot-plug output set)")
        self._require_matches("output", self.lister.destinations(), patterns)
        self.config.outputs = list(patterns)
        self._output_set.wanted = lambda names: self._match_all(names, patterns)
        self.watcher.reconcile_now()
        return self.outputs.names()

    # --- patched thru -----------------------------------------------------------------------------
    def _start_patched_thru(self):
        """On JACK, the keyboard patched straight to the synth (see ports/jack_patch.py), unless the
        box must filter the player's messages. Says which thru it chose."""
        if self.config.thru == "box":
            self.announce("thru  : through the box (--thru box)")
            return None
        if self.backend.name != "jack":
            self.announce("thru  : through the box (patched thru is JACK's; ALSA's is not built yet)")
            return None
        if self.config.clock_out:   # (its generator starts after this)
            self.announce("thru  : through the box (--clock-out replaces the keyboard's clock)")
            return None
        try:
            from sideman.ports.jack_patch import JackPatchThru

            patch = JackPatchThru(may_patch=self._thru_unfiltered).start()
        except Exception as exc:   # JACK-Client or libjack missing, or the client refused
            self.announce(f"warning: patched thru unavailable ({type(exc).__name__}: {exc}); thru through the box")
            return None
        self.announce("thru  : patched by JACK, keyboard straight to synth, the box listening beside it "
                      "(--thru box passes it through the box)")
        return patch

    def _thru_unfiltered(self) -> bool:
        """Nothing of the player's is the box's to take out (no MIDI-mapped CC, no MIDI learn)."""
        controls = self.midi_controls
        return controls is None or controls.passes_everything()

    # --- the built-in piano ----------------------------------------------------------------------
    def _open_builtin_piano(self) -> None:
        """FluidSynth as one more output, when asked for (or, with auto, while no hardware synth is
        connected). Anything missing (library, soundfont, audio device) is said in one line and the
        box plays on, MIDI only."""
        config = self.config
        if config.synth == "none":
            return
        if config.synth == "auto" and config.outputs:
            self.announce("sound : built-in piano off: you named the synth (--synth builtin adds it)")
            return
        from sideman.sound.builtin import BuiltinPiano, detect_audio_driver
        from sideman.sound.soundfonts import SoundError

        driver = config.audio_driver
        if driver == "auto":
            driver, found = detect_audio_driver(private_jack=self.backend.private_server is not None)
            if driver is None:
                self.announce(f"sound : {found}: built-in piano off, MIDI only "
                              f"(--audio-driver file --audio-file DUET.wav records it instead)")
                return
        try:
            piano = BuiltinPiano(self.ai_channel, driver, config.soundfont, config.audio_file,
                                 config.audio_period_frames, config.audio_periods)
        except SoundError as exc:
            self.announce(f"warning: {exc}; playing MIDI only")
            return
        # No latency compensation: your notes and the AI's share the same audio buffer.
        self._builtin = OutputSlot(piano)
        self.announce(f"sound : {piano.describe()}")

    def _follow_hardware_synths(self, arriving: str | None = None) -> None:
        """--synth auto: the built-in piano plays while no hardware synth is connected, and stops
        (its notes ended) when one is. Called at start and on every output hot-plug change."""
        if self._builtin is None:
            return
        hardware = sorted(self._output_set.connected) if self._output_set is not None else []
        if arriving is not None:
            hardware.append(arriving)  # connect callbacks run before the set lists the new port
        want_on = self.config.synth == "builtin" or not hardware
        if want_on == self._builtin_on:
            return
        first = self._builtin_on is None
        self._builtin_on = want_on
        if want_on:
            self.outputs.add(self._builtin)
            if self.config.synth == "auto":
                self.announce("sound : built-in piano on: no hardware synth connected (--synth none turns it off)")
        else:
            self.outputs.remove(self._builtin)
            if not first:
                self._builtin.release()
                self._builtin.port.silence()
            self.announce(f"sound : built-in piano off: {hardware[0]} is connected")

    # --- ports ----------------------------------------------------------------------------------
    def _make_slot(self, port: MidiOutput) -> OutputSlot:
        latency = self.config.controls["latency_ms"]
        for pattern, ms in self.config.output_latency_ms.items():
            if pattern.lower() in port.name.lower():
                latency = ms
        patchable = isinstance(port, RtMidiOutput) and self.backend is not None and self.backend.name == "jack"
        return OutputSlot(port, latency, patchable=patchable)

    @staticmethod
    def _match_all(names: list[str], patterns: list[str]) -> list[str]:
        found: list[str] = []
        for pattern in patterns:
            found += [n for n in matching_ports(names, pattern) if n not in found]
        return found

    def _require_matches(self, what: str, names: list[str], patterns: list[str]) -> None:
        for pattern in patterns:
            if not matching_ports(names, pattern):
                available = ", ".join(n for n in names if not is_own_port(n)) or "none"
                raise PortError(f"no MIDI {what} port matches {pattern!r} (available: {available})")

    def _input_set(self, label: str, wanted) -> PortSet:
        def connect(name: str):
            if self.patch is not None:
                self.patch.invalidate()   # the box passes this keyboard itself until it is patched
            port = RtMidiInput(self.backend, "sideman-in", connect_to=name)
            port.set_receiver(self.on_human)
            return port

        port_set = PortSet(label, self.lister.sources, wanted, connect, lambda _n, port: port.close(), self.announce)
        self._input_sets.append(port_set)
        return port_set

    def _output_set_for(self, label: str, wanted) -> PortSet:
        def connect(name: str) -> OutputSlot:
            if self.patch is not None:
                self.patch.invalidate()   # the box plays your notes into this synth until it is patched
            slot = self._make_slot(RtMidiOutput(self.backend, "sideman-out", connect_to=name))
            self.outputs.add(slot)
            self._follow_hardware_synths(arriving=name)
            return slot

        def disconnect(_name: str, slot: OutputSlot) -> None:
            # Output change: whatever we left sounding there ends first (if the device still listens).
            self.outputs.remove(slot)
            slot.release(all_notes_off=[self.ai_channel])
            slot.close()
            self._follow_hardware_synths()

        return PortSet(label, self.lister.destinations, wanted, connect, disconnect, self.announce)
