"""`sideman-bench audio`: how long the built-in piano takes from a note-on to its sound, per audio
buffer size.

A note-on waits for the next audio cycle, sounds after the soundfont's attack, then passes the
sound card's output buffer. Measured here, in one run:
- the attack: the same piano rendered offline, note-on -> first audible sample (the baseline no
  buffer setting can remove);
- the wait: the piano plays into a private JACK dummy server at each period size, and a JACK
  listener beside it counts the audio cycles from the one running at the note-on to the one
  carrying the note's first audible frame.
The dummy server has no sound card, and without real-time scheduling its cycles wake late, so its
frame clock cannot time a note to the frame; counting cycles does not depend on that. The card's
buffer (JACK and ALSA: 2 periods) is added as the formula it is.
"""

from __future__ import annotations

import os
import random
import threading
import time

import numpy as np

from sideman_bench.stats import percentile
from sideman.ports.jack_server import DummyJackServer
from sideman.sound.builtin import DEFAULT_PERIOD_FRAMES, DEFAULT_PERIODS, JACK_CLIENT_NAME, BuiltinPiano, buffer_ms
from sideman.sound.piano import SAMPLE_RATE, DuetPiano
from sideman.sound.soundfonts import find_soundfont

AUDIBLE = 1e-3       # sample magnitude that counts as sound (a mezzo-forte note peaks near 0.05)
PITCHES = (48, 55, 60, 64, 67, 72)


def _summary(values_ms: list[float]) -> dict:
    return {"n": len(values_ms), "p50_ms": round(float(np.median(values_ms)), 3) if values_ms else None,
            "p99_ms": round(percentile(values_ms, 99), 3) if values_ms else None}


def offline_attack_ms(soundfont, notes: int) -> list[float]:
    """The soundfont's attack: note-on -> first audible sample with no buffer at all."""
    piano = DuetPiano(soundfont, ai_channel=1)
    try:
        attacks = []
        for i in range(notes):
            pitch = PITCHES[i % len(PITCHES)]
            piano.play((0x91, pitch, 100))
            audio = np.abs(piano.synth.get_samples(SAMPLE_RATE // 10).reshape(-1, 2)) / 32768.0
            loud = np.flatnonzero(audio.max(axis=1) > AUDIBLE)
            if len(loud):
                attacks.append(1000.0 * loud[0] / SAMPLE_RATE)
            piano.synth.all_sounds_off(1)
            piano.synth.get_samples(SAMPLE_RATE // 10)
        return attacks
    finally:
        piano.delete()


def jack_cycles_to_sound(soundfont, period: int, notes: int, rng: random.Random) -> list[int]:
    """Per note: audio cycles from the one running at its note-on to the first that carries it."""
    import jack

    with DummyJackServer(name=f"sideman-bench-audio-{os.getpid()}", rate=SAMPLE_RATE, period=period):
        piano = BuiltinPiano(ai_channel=1, driver="jack", soundfont=soundfont)
        listener = jack.Client("bench-audio-listener", no_start_server=True)
        try:
            piano.piano.synth.set_reverb(level=0.0)   # only the notes themselves count as sound
            piano.piano.synth.set_chorus(level=0.0)
            port = listener.inports.register("in")
            heard: list[int] = []
            cycle = [0]
            ready = threading.Event()

            @listener.set_process_callback
            def process(frames):
                cycle[0] += 1
                if ready.is_set() and np.abs(port.get_array()).max() > AUDIBLE:
                    heard.append(cycle[0])
                    ready.clear()

            listener.activate()
            listener.connect(f"{JACK_CLIENT_NAME}:left", port)
            listener.connect(f"{JACK_CLIENT_NAME}:right", port)
            time.sleep(0.2)
            waits = []
            for i in range(notes):
                time.sleep(rng.uniform(0.03, 0.06))  # a random phase against the JACK cycle
                heard.clear()
                ready.set()
                sent = cycle[0]
                piano.send((0x91, PITCHES[i % len(PITCHES)], 100))
                deadline = time.monotonic() + 1.0
                while not heard and time.monotonic() < deadline:
                    time.sleep(0.0005)
                ready.clear()
                if heard:
                    waits.append(heard[0] - sent)
                piano.piano.synth.all_sounds_off(1)
                time.sleep(2 * period / SAMPLE_RATE + 0.02)
            return waits
        finally:
            listener.deactivate()
            listener.close()
            piano.close()


def run_audio_bench(periods: tuple[int, ...] = (64, 128, 256, 512), notes: int = 40, seed: int = 1,
                    soundfont=None) -> dict:
    rng = random.Random(seed)
    soundfont = find_soundfont(soundfont)
    attack = _summary(offline_attack_ms(soundfont, notes))
    per_period = []
    for period in periods:
        waits = jack_cycles_to_sound(soundfont, period, notes, rng)
        period_ms = 1000.0 * period / SAMPLE_RATE
        card_buffer = buffer_ms(period, 2)
        # A note-on lands at a random point of the running cycle: it waits the rest of that
        # cycle (half a period on average), plus any further cycles counted.
        mean_wait = (float(np.mean(waits)) - 0.5) * period_ms if waits else None
        worst_wait = max(waits) * period_ms if waits else None
        per_period.append({
            "period_frames": period, "period_ms": round(period_ms, 3),
            "cycles_to_sound": {"n": len(waits), "p50": float(np.median(waits)) if waits else None,
                                "max": max(waits) if waits else None},
            "sound_card_buffer_ms": round(card_buffer, 3),
            "to_the_speaker_typical_ms": round(attack["p50_ms"] + mean_wait + card_buffer, 2) if waits else None,
            "to_the_speaker_worst_ms": round(attack["p99_ms"] + worst_wait + card_buffer, 2) if waits else None,
        })
    return {
        "benchmark": "audio", "soundfont": soundfont.name, "sample_rate": SAMPLE_RATE, "notes_per_setting": notes,
        "baseline_offline_attack": attack,
        "jack": per_period,
        # FluidSynth's own ALSA/PulseAudio drivers: the buffer is periods x period (not measurable
        # without a sound card; a device adds its converter latency).
        "alsa_pulse_buffer_ms": {
            "sideman_default": {"period_frames": DEFAULT_PERIOD_FRAMES, "periods": DEFAULT_PERIODS,
                                "ms": round(buffer_ms(DEFAULT_PERIOD_FRAMES, DEFAULT_PERIODS), 2)},
            "fluidsynth_default": {"period_frames": 64, "periods": 16, "ms": round(buffer_ms(64, 16, 44100), 2)},
        },
    }
