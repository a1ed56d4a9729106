"""`sideman run` as the box: saved settings under the command-line flags, a Box, the panel around
it (GPIO knobs and the OLED on the Jetson, the terminal simulation on a laptop, or no panel: MIDI
CC, learn, Program Change and saved settings still work) and, under systemd, readiness and the
watchdog."""

from __future__ import annotations

import logging
import shutil
import sys

from sideman.box import Box, BoxConfig
from sideman.controls import values_from_args
from sideman.panel.controller import PanelController
from sideman.panel.settings import Settings, SettingsError, load_settings, settings_path

log = logging.getLogger("sideman.appliance")

PANELS = ("auto", "gpio", "sim", "none")


def saved_settings(announce) -> tuple[Settings, str | None]:
    """The saved settings, or the defaults with a message when the file is refused. A refused
    file is copied aside (settings.toml.rejected) before anything could overwrite it."""
    path = settings_path()
    try:
        return load_settings(path), None
    except SettingsError as exc:
        rejected = path.with_name(path.name + ".rejected")
        try:
            shutil.copyfile(path, rejected)
            kept = f"your file is kept as {rejected}"
        except OSError:
            kept = "the file is left as it is"
        message = f"settings not loaded: {exc}. Playing on the defaults; {kept}"
        announce(f"warning: {message}")
        return Settings(), message


def box_config(args, settings: Settings, service: bool = False) -> BoxConfig:
    """Flags given on the command line win over saved settings; saved settings over defaults."""
    settings.controls = values_from_args(args, base=settings.controls)
    settings.mode = args.mode or settings.mode
    settings.styles = args.style or settings.styles
    settings.synth = args.synth or settings.synth
    # The box drives a real synth: its built-in piano plays only when asked for (--synth builtin).
    synth = "none" if service and settings.synth == "auto" else settings.synth
    return BoxConfig(backend=args.backend, inputs=args.input, outputs=args.output,
                     autoconnect=args.autoconnect, din=args.din, voice=args.voice,
                     model_backend=args.model_backend, lookahead_s=args.lookahead_s,
                     mode=settings.mode, style=settings.styles, seed=args.seed,
                     clock_out=args.clock_out, capture=args.capture,
                     output_latency_ms=dict(args.output_latency), controls=settings.controls,
                     synth=synth, soundfont=args.soundfont, audio_driver=args.audio_driver,
                     audio_file=args.audio_file, audio_period_frames=args.audio_period,
                     audio_periods=args.audio_periods, thru=args.thru)


def make_panel(kind: str, box: Box, settings: Settings, announce) -> PanelController:
    """The panel controller with its hands and screen: GPIO + OLED ('gpio'; 'auto' when on a
    Jetson with the pin map), the terminal ('sim') or none. A screen or GPIO that cannot be opened
    is reported and the box plays on without it."""
    display = inputs = None
    if kind == "sim":
        from sideman.panel.display import Display, make_device
        from sideman.panel.terminal import TerminalKeys, TerminalScreen

        display = TerminalScreen(Display(make_device(kind="dummy")), describe=describe_view)
        inputs = TerminalKeys
    elif kind in ("gpio", "auto"):
        display, inputs = _hardware_panel(kind, announce)
    controller = PanelController(box, settings, display=display)
    if inputs is not None:
        controller.inputs = inputs(controller.post)  # the hands post their events to the controller
    box.midi_controls = controller.midi
    return controller


def _hardware_panel(kind: str, announce):
    """(display or None, a function emit -> PanelInputs, or None)."""
    from sideman.panel.gpio_inputs import PanelInputs, open_jetson_gpio
    from sideman.panel.pin_map import PinMapError, load_pin_map

    try:
        gpio = open_jetson_gpio()
    except Exception as exc:
        if kind == "gpio":
            announce(f"warning: no panel knobs: {exc}")
        return None, None
    try:
        pin_map = load_pin_map()
    except PinMapError as exc:
        announce(f"warning: no panel: {exc}")
        return None, None
    display = None
    try:
        from sideman.panel.display import Display, DisplayError, make_device

        display = Display(make_device(pin_map.oled))
    except DisplayError as exc:
        announce(f"warning: no OLED: {exc}; the knobs still work")
    return display, lambda emit: PanelInputs(gpio, pin_map, emit=emit)


def describe_view(view) -> str:
    """One line of what the screen says, in words."""
    from sideman.panel.views import AlertView, HomeView, MenuView

    if isinstance(view, HomeView):
        knobs = "  ".join(f"{k.label} {k.value}" for k in view.knobs)
        tempo = f"{view.tempo_bpm:.0f} BPM" if view.tempo_bpm else "-- BPM"
        return (f"mode {view.mode} | {'/'.join(view.styles)} blend {view.blend:.2f} | {tempo} | "
                f"chord {view.chord or '-'} | {view.activity} | {knobs}" + (f" | {view.badge}" if view.badge else ""))
    if isinstance(view, MenuView):
        return f"menu {view.title}: > {view.items[view.selected]}"
    if isinstance(view, AlertView):
        return f"{view.title}: {' / '.join(view.lines)}"
    return ""


def run(args, panel: str = "auto", service: bool = False) -> int:
    announce = (lambda text: log.info("%s", text)) if panel == "sim" else (lambda text: print(text, flush=True))
    settings, problem = saved_settings(announce)
    box = Box(box_config(args, settings, service=service), announce=announce)
    controller = make_panel(panel, box, settings, announce)
    if problem:
        controller.alert_now("SETTINGS", "file refused,", "defaults used", seconds=5.0)
    hooks = None
    if service:
        from sideman.service.runner import ServiceHooks

        hooks = ServiceHooks()
        hooks.attach(box)

    def started():
        controller.start()
        if hooks is not None:
            hooks.ready(box)

    def stopping():
        if hooks is not None:
            hooks.stopping()
        controller.stop()

    ready = "ready: play something (Ctrl-C to stop)"
    if panel == "sim":
        ready = "ready"
        print("\x1b[2J", end="", file=sys.stdout, flush=True)
    return box.run_until_stopped(ready, on_started=started, on_stopping=stopping)
