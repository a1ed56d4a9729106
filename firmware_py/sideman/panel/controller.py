"""The panel controller: the one place where the knobs, the buttons, MIDI CC/learn and Program Change
change the box, and where the OLED's picture comes from.

Everything arrives as an event in one queue (GPIO callbacks, the terminal simulator's keys, MIDI from
the input thread) and is handled on the panel's own thread, `step()` at a time. Work that touches
the session (mode, keep, panic, styles) goes to the engine thread through `engine.call_soon`, so the
panel never races the music. The controls dict it edits is the one the session reads at every
request: a knob acts on the next notes. Settings are saved atomically a second after the last change.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sideman.clock import NS_PER_S, now_ns
from sideman.controls import BY_NAME, MUSICAL
from sideman.controls import value as control_value
from sideman.model.voice import HUSH
from sideman.panel.events import Click, Press, Turn
from sideman.panel.knobs import KNOBS, format_value, step_control
from sideman.panel.midi_map import MidiControlMap
from sideman.panel.presets import Preset, PresetBank
from sideman.panel.settings import Settings, SettingsError, save_settings
from sideman.panel.views import AlertView, HomeView, KnobView, MenuView
from sideman.play.contracts import Partner, as_partner
from sideman.play.modes import MODE_NAMES, MODES
from sideman.play.steering import parse_style

log = logging.getLogger("sideman.panel")

SNAPSHOT_EVERY_S = 0.1     # how often the OLED's chord/tempo/activity are read from the engine
SAVE_AFTER_S = 1.0         # settings are written this long after the last change
HELD_SHOWN_S = 1.5         # a knob shows its second function this long after a held turn
ALERT_S = 2.0
MENU_IDLE_S = 10.0
LEARN_TIMEOUT_S = 15.0
PANEL_TICK_S = 0.01


@dataclass(frozen=True)
class Snapshot:
    """What the engine thread last reported for the screen."""
    chord: str | None = None
    tempo_bpm: float | None = None
    busy: bool = False
    in_phrase: bool = False
    planned: int = 0


@dataclass
class Menu:
    title: str
    items: list[tuple[str, Callable[[], None], Callable[[], str] | None]]  # label, action, value
    selected: int = 0


class PanelController:
    def __init__(self, box, settings: Settings, *, display=None, inputs=None, bank: PresetBank | None = None,
                 settings_file: Path | None = None, clock: Callable[[], float] = time.monotonic,
                 styles_available: Callable[[], list[str]] | None = None):
        self.box = box
        self.settings = settings
        # The voice as a listening partner (the session), or None for the plain voices (echo,
        # silent), which the panel only shows.
        self.partner: Partner | None = as_partner(box.voice)
        # One dict for the panel, the CLI and the session: whatever moves it, the next notes hear it.
        self.controls = box.voice.controls if self.partner is not None else box.config.controls
        settings.controls = self.controls
        self.display = display
        self.inputs = inputs
        self.bank = bank or PresetBank()
        self.settings_file = settings_file
        self.clock = clock
        if styles_available is None:
            # The styles the voice playing knows (the transformer's style table, else the
            # Markov tables shipped).
            styles_available = self.partner.available_styles if self.partner is not None else None
        if styles_available is None:
            from sideman.model.markov import available_styles as styles_available
        self.styles_available = styles_available
        self.midi = MidiControlMap(settings.cc_map,
                                   on_change=lambda target, value: self.post(("cc", target, value)),
                                   on_program=lambda channel, program: self.post(("program", channel, program)),
                                   on_learned=lambda cc, target: self.post(("learned", cc, target)),
                                   also_reserved=lambda cc: cc == control_value(self.controls, "keep_cc"))
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.muted = False
        self.menu: list[Menu] = []           # a stack: main menu, then a submenu
        self.menu_touched = 0.0
        self.alert: tuple[AlertView, float] | None = None
        self.learning: tuple[str, float] | None = None   # (target, since)
        self.held_until = [0.0] * len(KNOBS)
        self.snapshot = Snapshot()
        self._next_snapshot = 0.0
        self._changed_at: float | None = None
        self._outputs_seen: list[str] | None = None
        self._voice_errors_seen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.saves = 0

    # --- the queue (any thread) ---------------------------------------------------------------
    def post(self, event) -> None:
        self._inbox.put(event)

    def alert_now(self, title: str, *lines: str, level: str = "warning", seconds: float = ALERT_S) -> None:
        """Show an alert from any thread (e.g. a settings file refused at start)."""
        self.post(("alert", AlertView(title, tuple(lines), level), seconds))

    # --- the panel thread ---------------------------------------------------------------------
    def start(self) -> None:
        if self.inputs is not None:
            try:
                self.inputs.start()
            except Exception as exc:  # no knobs is bad; no music would be worse
                log.error("panel knobs and buttons unavailable: %s", exc)
                self.inputs = None
                self.alert_now("NO KNOBS", str(exc)[:21], "MIDI CC still works", level="error", seconds=5.0)
        self._thread = threading.Thread(target=self._run, name="sideman-panel", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            if self.inputs is not None:
                self.inputs.close()
            self.step(self.clock())   # what was turned last is handled too
        finally:
            self.flush()
            if self.display is not None:
                self.display.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(PANEL_TICK_S):
            try:
                now = self.clock()
                if self.inputs is not None:
                    self.inputs.poll(now)
                self.step(now)
            except Exception:  # the panel must never take the music down with it
                failures += 1
                if failures == 1 or failures % 1000 == 0:  # not 100 tracebacks a second
                    log.exception("panel step failed (%d times)", failures)

    def step(self, now: float) -> None:
        """Handle what arrived, refresh what the screen shows, save settings when they rest."""
        while True:
            try:
                event = self._inbox.get_nowait()
            except queue.Empty:
                break
            self.handle(event, now)
        if now >= self._next_snapshot and self.box.engine is not None:
            self._next_snapshot = now + SNAPSHOT_EVERY_S
            self.box.engine.call_soon(self._take_snapshot)
        self._watch_box(now)
        self._expire(now)
        try:
            if self.display is not None:
                self.display.show(self.view(now))
        finally:  # whatever the screen does, the settings are saved
            if self._changed_at is not None and now - self._changed_at >= SAVE_AFTER_S:
                self.flush()

    def flush(self) -> None:
        """Write the settings now if anything changed since the last save."""
        if self._changed_at is None:
            return
        changed_at, self._changed_at = self._changed_at, None
        self.settings.cc_map = self.midi.mapping()
        try:
            save_settings(self.settings, self.settings_file)
            self.saves += 1
        except OSError as exc:
            self._changed_at = changed_at + SAVE_AFTER_S * 10  # try again later (a full disk may clear)
            log.error("could not save the settings: %s", exc)
            self.alert = (AlertView("CANNOT SAVE", (str(exc.strerror or exc)[:20],), "error"), self.clock() + ALERT_S)

    # --- events -------------------------------------------------------------------------------
    def handle(self, event, now: float) -> None:
        if isinstance(event, Turn):
            self._turn(event, now)
        elif isinstance(event, Click):
            self._click(event, now)
        elif isinstance(event, Press):
            self._press(event, now)
        elif event[0] == "cc":
            _, target, value = event
            if target == "mode":
                self.set_mode(value, now)
            else:
                self.controls[target] = value
                self._changed(now)
        elif event[0] == "program":
            _, channel, program = event
            # Only on the preset channel: a keyboard that sends its own patch changes on channel 1
            # must not change how the AI plays.
            if channel + 1 == control_value(self.controls, "program_channel"):
                self.recall_program(program, now)
        elif event[0] == "learned":
            _, cc, target = event
            self.learning = None
            self._changed(now)
            self._show_alert(now, "LEARNED", f"CC {cc}", f"-> {_label(target)}", level="info")
        elif event[0] == "kept":
            notes = event[1]
            if notes:
                hint = "" if self.settings.mode == "variation" else "for VAR mode"
                self._show_alert(now, "PHRASE KEPT", f"{notes} notes", hint, level="info")
            else:
                self._show_alert(now, "NOTHING KEPT", "play a phrase first", level="info")
        elif event[0] == "alert":
            _, view, seconds = event
            self.alert = (view, now + seconds)

    def _turn(self, event: Turn, now: float) -> None:
        if self.learning is not None:
            return
        if self.menu:
            menu = self.menu[-1]
            menu.selected = max(0, min(len(menu.items) - 1, menu.selected + event.steps))
            self.menu_touched = now
            return
        knob = KNOBS[event.encoder]
        function = knob.held if event.held else knob.turn
        if event.held:
            self.held_until[event.encoder] = now + HELD_SHOWN_S
        self.change(function.target, event.steps, now)

    def _click(self, event: Click, now: float) -> None:
        if self.learning is not None:
            self.midi.cancel_learn()
            self.learning = None
            self._show_alert(now, "LEARN CANCELLED", level="info")
        elif self.menu:
            menu = self.menu[-1]
            self.menu_touched = now
            menu.items[menu.selected][1]()
        else:
            self.open_menu(now)

    def _press(self, event: Press, now: float) -> None:
        engine = self.box.engine
        if event.button == "panic":
            self.menu.clear()
            if event.long:
                self.set_muted(not self.muted, now)
            else:
                # Straight from this thread: the scheduler's panic is thread-safe, and a panic
                # must not wait behind anything, not even a flood in the engine's inbox.
                self.box.scheduler.panic("panel panic")
                if self.partner is not None:
                    engine.call_soon(_quietly(self.partner.hush, now_ns() / NS_PER_S))
                self._show_alert(now, "PANIC", "all AI notes off", level="info", seconds=1.0)
        elif event.button == "keep":
            if event.long:
                self.save_preset(now)
            elif self.partner is not None:
                def keep():
                    phrase = self.partner.keep_phrase(now_ns() / NS_PER_S)
                    self.post(("kept", len(phrase.notes) if phrase is not None else 0))
                engine.call_soon(keep)

    # --- what the panel changes ---------------------------------------------------------------
    def change(self, target: str, steps: int, now: float) -> None:
        if target == "mode":
            index = MODE_NAMES.index(self.settings.mode) if self.settings.mode in MODE_NAMES else 0
            # One mode per detent whatever the acceleration: modes are few and each one matters.
            index = max(0, min(len(MODE_NAMES) - 1, index + (1 if steps > 0 else -1)))
            self.set_mode(MODE_NAMES[index], now)
        elif target == "partner":
            first = parse_style(self.settings.styles)[0][0]
            partners = [s for s in self.styles_available() if s != first]
            if not partners:
                return
            current = self.styles()[1] if len(self.styles()) > 1 else None
            index = partners.index(current) if current in partners else -1
            index = max(0, min(len(partners) - 1, index + (1 if steps > 0 else -1)))
            self.set_styles(f"{first},{partners[index]}", now)
        else:
            self.controls[target] = step_control(target, self.controls[target], steps)
            self._changed(now)

    def set_mode(self, mode: str, now: float) -> None:
        if mode == self.settings.mode:
            return
        self.settings.mode = self.box.config.mode = mode
        voice = self.partner
        if voice is not None:
            def change_mode():
                voice.set_mode(mode, now_ns() / NS_PER_S)
                return [HUSH]  # what the old mode left sounding ends now
            self.box.engine.call_soon(change_mode)
        self._changed(now)

    def set_styles(self, spec: str, now: float) -> None:
        if spec == self.settings.styles:
            return
        voice = self.partner
        if voice is not None:
            from sideman.play.voices import load_styles

            # Tables load here (a few hundred ms at most); the engine thread only swaps them in.
            models, problems = load_styles(spec, warn=log.warning)
            names = tuple(name for name, _ in parse_style(spec))
            self.box.engine.call_soon(lambda: voice.use_styles(names, models))
            playable = set(self.styles_available())
            if problems and not all(name in playable for name in names):
                # (A style the transformer knows plays even without its Markov table: only the
                # stand-in voice then learns it from the player.)
                self._show_alert(now, "STYLE MISSING", *problems[0][:40].split(": ", 1))
        self.settings.styles = self.box.config.style = spec
        self._changed(now)

    def set_muted(self, muted: bool, now: float) -> None:
        self.muted = muted

        def mute():
            # On the engine thread, between two of the voice's batches: a note-on never goes out
            # without its note-off.
            self.box.engine.muted = muted
            return [HUSH] if muted else ()
        self.box.engine.call_soon(mute)
        self._show_alert(now, "AI MUTED" if muted else "AI ON", level="info", seconds=1.0)

    def recall_program(self, program: int, now: float) -> None:
        try:
            preset = self.bank.by_program(program)
        except SettingsError as exc:
            log.error("preset refused, settings unchanged: %s", exc)
            self._show_alert(now, "BAD PRESET", f"P{program} kept old", "see the log", level="error")
            return
        if preset is None:
            return  # a Program Change with no preset of ours is the synth's business
        self.recall(preset, now)

    def recall(self, preset: Preset, now: float) -> None:
        self.controls.update(preset.controls)
        self.set_mode(preset.mode, now)
        self.set_styles(preset.styles, now)
        self._changed(now)
        self._show_alert(now, "PRESET", f"P{preset.program} {preset.name}", level="info")

    def save_preset(self, now: float, name: str | None = None) -> Preset | None:
        try:
            program = self.bank.next_free_program()
            preset = Preset.from_settings(name or f"preset {program}", program, self.settings)
            self.bank.save(preset)
        except (SettingsError, OSError) as exc:
            log.error("could not save a preset: %s", exc)
            self._show_alert(now, "NOT SAVED", str(exc)[-20:], level="error")
            return None
        self._show_alert(now, "SAVED", f"P{program} {preset.name}", "Program Change", level="info")
        return preset

    # --- menus --------------------------------------------------------------------------------
    def open_menu(self, now: float) -> None:
        self.menu = [Menu("MENU", [
            ("Presets", lambda: self._open(self._presets_menu()), None),
            ("Save preset", lambda: (self.save_preset(self.clock()), self.menu.clear()), None),
            ("MIDI learn", lambda: self._open(self._learn_menu()), None),
            ("Forget CCs", self._forget_ccs, lambda: str(len(self.midi.cc_map))),
            ("Mute AI", lambda: (self.set_muted(not self.muted, self.clock()), self.menu.clear()),
             lambda: "on" if self.muted else "off"),
            ("Info", self._info, None),
            ("Back", self._back, None),
        ])]
        self.menu_touched = now

    def _open(self, menu: Menu) -> None:
        self.menu.append(menu)

    def _back(self) -> None:
        self.menu.pop()

    def _presets_menu(self) -> Menu:
        presets, problems = self.bank.list()
        for problem in problems:
            log.warning("preset skipped: %s", problem)
        items = [(f"P{p.program} {p.name}", lambda p=p: (self.recall(p, self.clock()), self.menu.clear()), None)
                 for p in presets]
        return Menu("PRESETS", items + [("Back", self._back, None)])

    def _learn_menu(self) -> Menu:
        targets = ["mode"] + list(MUSICAL)
        items = [(_label(t), lambda t=t: self._start_learn(t), lambda t=t: self._cc_of(t)) for t in targets]
        return Menu("MIDI LEARN", items + [("Back", self._back, None)])

    def _cc_of(self, target: str) -> str:
        ccs = [cc for cc, t in self.midi.cc_map.items() if t == target]
        return f"CC{ccs[0]}" if ccs else "-"

    def _start_learn(self, target: str) -> None:
        self.midi.learn(target)
        self.learning = (target, self.clock())
        self.menu.clear()

    def _forget_ccs(self) -> None:
        self.midi.forget()
        self._changed(self.clock())
        self.menu.clear()
        self._show_alert(self.clock(), "CC MAP CLEARED", level="info")

    def _info(self) -> None:
        outputs = self.box.outputs.names()
        self.menu.clear()
        self._show_alert(self.clock(), "INFO", f"voice {self.box.voice.name}"[:21],
                         f"{len(outputs)} output(s)", f"{len(self.midi.cc_map)} CC mapped", level="info", seconds=4.0)

    # --- what the screen shows ----------------------------------------------------------------
    def view(self, now: float):
        if self.learning is not None:
            return AlertView("MIDI LEARN", ("move a knob for", _label(self.learning[0]), "push: cancel"), "info")
        if self.alert is not None:
            return self.alert[0]
        if self.menu:
            menu = self.menu[-1]
            return MenuView(menu.title, tuple(label for label, _, _ in menu.items), menu.selected,
                            tuple(value() if value else "" for _, _, value in menu.items),
                            "turn: choose  push: ok")
        return self.home(now)

    def styles(self) -> tuple[str, ...]:
        return tuple(name for name, _ in parse_style(self.settings.styles))

    def home(self, now: float) -> HomeView:
        snap = self.snapshot
        if self.muted:
            activity = "muted"
        elif snap.busy:
            activity = MODES[self.settings.mode].activity if self.settings.mode in MODES else "answering"
        else:
            activity = "listening"
        knobs = []
        for i, knob in enumerate(KNOBS):
            held = now < self.held_until[i]
            function = knob.held if held else knob.turn
            knobs.append(KnobView(function.label, self._value_text(function.target), held))
        return HomeView(mode=self.settings.mode, styles=self.styles(),
                        blend=control_value(self.controls, "style_blend"), tempo_bpm=snap.tempo_bpm,
                        chord=snap.chord, activity=activity, planned_notes=snap.planned,
                        voice=self.partner.improviser_name if self.partner is not None else self.box.voice.name, knobs=tuple(knobs),
                        badge=self._badge())

    def _value_text(self, target: str) -> str:
        if target == "mode":
            return format_value("mode", self.settings.mode)
        if target == "partner":
            styles = self.styles()
            return styles[1][:5].upper() if len(styles) > 1 else "-"
        return format_value(target, self.controls[target])

    def _badge(self) -> str | None:
        if self._outputs_seen is not None and not self._outputs_seen:
            return "NO OUTPUT"
        if self.partner is not None and self.partner.warnings:
            return "STYLE MISSING"
        return None

    # --- on the engine thread ------------------------------------------------------------------
    def _take_snapshot(self):
        voice = self.partner
        t = now_ns() / NS_PER_S
        chord = tempo = None
        busy = in_phrase = False
        if voice is not None:
            state = voice.state(t)
            chord = state.chord.label if state.chord is not None else None
            tempo = state.beat.tempo_bpm if state.beat.confidence > 0 else None
            in_phrase = state.in_phrase
            busy = voice.ai_busy(t)
        self.snapshot = Snapshot(chord, tempo, busy, in_phrase, self.box.scheduler.pending())
        return ()

    # --- housekeeping -------------------------------------------------------------------------
    def _watch_box(self, now: float) -> None:
        outputs = self.box.outputs.names()
        if self._outputs_seen is not None:
            lost = [name for name in self._outputs_seen if name not in outputs]
            if lost:
                self._show_alert(now, "PORT LOST", lost[0][-21:], "reconnects when back", seconds=3.0)
        self._outputs_seen = outputs
        errors = self.box.engine.voice_errors
        if errors > self._voice_errors_seen:
            self._voice_errors_seen = errors
            self._show_alert(now, "VOICE ERROR", (self.box.engine.last_error or "")[:21], "AI notes silenced",
                             level="error", seconds=3.0)

    def _expire(self, now: float) -> None:
        if self.alert is not None and now >= self.alert[1]:
            self.alert = None
        if self.menu and now - self.menu_touched > MENU_IDLE_S:
            self.menu.clear()
        if self.learning is not None and now - self.learning[1] > LEARN_TIMEOUT_S:
            self.midi.cancel_learn()
            self.learning = None

    def _show_alert(self, now: float, title: str, *lines: str, level: str = "warning", seconds: float = ALERT_S) -> None:
        self.alert = (AlertView(title, tuple(line for line in lines if line), level), now + seconds)

    def _changed(self, now: float) -> None:
        self._changed_at = now


def _quietly(function, *args):
    """An engine command that calls `function` and schedules nothing itself."""
    def command():
        function(*args)
    return command


def _label(target: str) -> str:
    return "MODE" if target == "mode" else target.replace("_", " ").upper()


assert all(f.target in BY_NAME or f.target in ("mode", "partner") for k in KNOBS for f in (k.turn, k.held))
