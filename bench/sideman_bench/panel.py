"""`sideman-bench panel`: what the OLED costs. A scripted minute of a gig (the chord changes every
two beats at 120 BPM, the AI answers every other bar, bursts of knob turns) is shown on luma's dummy
device at the panel's 100 Hz tick, redrawing on change only, beside the baseline that redraws at
every tick. Reported: frames drawn, the time to draw one frame here, and the I2C time those frames
would take on the box's SSD1306 (about 23 ms per full frame at 400 kHz, from TARGETS.md: an
estimate, not measured here; there is no I2C bus on this machine)."""

from __future__ import annotations

import time

from sideman_bench.stats import summary_ms
from sideman.panel.display import Display, make_device
from sideman.panel.views import HomeView, KnobView

TICK_S = 0.01
SSD1306_FRAME_MS = 23.0
CHORDS = ("Dm7", "G7", "Cmaj7", "A7alt")


def scripted_views(seconds: float = 60.0):
    """One HomeView per panel tick of a scripted gig (deterministic)."""
    beat = 0.5
    views = []
    for i in range(int(seconds / TICK_S)):
        t = i * TICK_S
        bar = int(t / (4 * beat))
        density = 0.5 + 0.025 * min(10, max(0, int((t % 15.0 - 5.0) / 0.1)))  # a knob turned 5–6 s into every 15 s
        knobs = (KnobView("BLEND", "0.30"), KnobView("MODE", "CALL"), KnobView("ADV", "1.00"),
                 KnobView("DENS", f"{density:.2f}"))
        answering = bar % 2 == 1
        views.append(HomeView(mode="call-response", styles=("mehldau", "tatum"), blend=0.3, tempo_bpm=120.0,
                              chord=CHORDS[int(t / (2 * beat)) % len(CHORDS)],
                              activity="answering" if answering else "listening",
                              planned_notes=(8 - int(t / beat) % 4 * 2) if answering else 0,
                              voice="markov", knobs=knobs))
    return views


def _run(views, on_change_only: bool) -> dict:
    display = Display(make_device(kind="dummy"))
    show_ns, draw_ns = [], []
    for view in views:
        if not on_change_only:
            display.invalidate()  # the baseline: every tick draws
        start = time.perf_counter_ns()
        drew = display.show(view)
        elapsed = time.perf_counter_ns() - start
        show_ns.append(elapsed)
        if drew:
            draw_ns.append(elapsed)
    seconds = len(views) * TICK_S
    frames = display.redraws
    return {"frames": frames, "frames_per_s": round(frames / seconds, 2),
            "draw_one_frame": summary_ms(draw_ns), "per_tick": summary_ms(show_ns),
            "estimated_i2c_busy_pct": round(100 * frames * SSD1306_FRAME_MS / 1000 / seconds, 1)}


def run_panel_bench(seconds: float = 60.0) -> dict:
    views = scripted_views(seconds)
    return {"seconds": seconds, "tick_ms": TICK_S * 1000,
            "redraw_on_change": _run(views, on_change_only=True),
            "baseline_redraw_every_tick": _run(views, on_change_only=False),
            "ssd1306_frame_ms_assumed": SSD1306_FRAME_MS}
