"""A duet on disk: the two-track MIDI file (human, sideman) and a piano-roll picture."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from sideman import messages as mm
from sideman.capture import AI as AI_TRACK, HUMAN as HUMAN_TRACK, SessionRecorder
from sideman.clock import NS_PER_S
from sideman.model.events import Event, Note, Pedal
from sideman.paths import write_atomically
from sideman.play.simulate import performance_messages

HUMAN_COLOUR = (52, 101, 164)
AI_COLOUR = (230, 120, 30)
MAX_WIDTH_PX = 6000


def ai_messages(ai: list[Note], ai_channel: int) -> list[tuple[float, tuple]]:
    timed = []
    for note in ai:
        timed.append((note.onset_s, mm.note_on(ai_channel, note.pitch, note.velocity)))
        timed.append((note.onset_s + note.duration_s, mm.note_off(ai_channel, note.pitch)))
    return timed


def duet_messages(human: list[Event], ai: list[Note], ai_channel: int = 1) -> list[tuple[float, tuple]]:
    """Both parts as timed MIDI messages: the human on channel 1, the AI on its own."""
    return performance_messages(human) + ai_messages(ai, ai_channel)


def write_duet_midi(path: Path, human: list[Event], ai: list[Note], ai_channel: int = 1) -> None:
    recorder = SessionRecorder()
    recorder.started_ns = 0
    for t, message in performance_messages(human):
        recorder.record(HUMAN_TRACK, message, int(t * NS_PER_S))
    for t, message in ai_messages(ai, ai_channel):
        recorder.record(AI_TRACK, message, int(t * NS_PER_S))
    buffer = io.BytesIO()
    recorder.to_midifile().save(file=buffer)
    write_atomically(Path(path), buffer.getvalue())


def draw_piano_roll(human: list[Event], ai: list[Note], title: str = "") -> Image.Image:
    """Human notes blue, the AI's orange, C lines marked; time left to right."""
    notes = [e for e in human if isinstance(e, Note)] + list(ai)
    if not notes:
        return Image.new("RGB", (400, 120), "white")
    start = min(n.onset_s for n in notes)
    end = max(n.onset_s + n.duration_s for n in notes)
    low = min(n.pitch for n in notes) - 2
    high = max(n.pitch for n in notes) + 2
    px_per_s = min(60.0, MAX_WIDTH_PX / max(1.0, end - start))
    row = 5
    margin_top, margin_left = 22, 30
    width = int((end - start) * px_per_s) + margin_left + 10
    height = (high - low + 1) * row + margin_top + 10
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def y_of(pitch: int) -> int:
        return margin_top + (high - pitch) * row

    for pitch in range(low, high + 1):
        if pitch % 12 == 0:
            draw.line([(margin_left, y_of(pitch) + row), (width, y_of(pitch) + row)], fill=(215, 215, 215))
            draw.text((2, y_of(pitch) - 4), f"C{pitch // 12 - 1}", fill=(120, 120, 120))
    for second in range(0, int(end - start) + 1, 10):
        x = margin_left + int(second * px_per_s)
        draw.line([(x, margin_top), (x, height)], fill=(235, 235, 235))
    pedal_down = None
    for e in human:
        if isinstance(e, Pedal):
            if e.down and pedal_down is None:
                pedal_down = e.onset_s
            elif not e.down and pedal_down is not None:
                draw.rectangle([margin_left + (pedal_down - start) * px_per_s, height - 6,
                                margin_left + (e.onset_s - start) * px_per_s, height - 3], fill=(190, 205, 225))
                pedal_down = None
    for colour, group in ((HUMAN_COLOUR, [e for e in human if isinstance(e, Note)]), (AI_COLOUR, ai)):
        for n in group:
            x0 = margin_left + (n.onset_s - start) * px_per_s
            x1 = max(x0 + 2, margin_left + (n.onset_s + n.duration_s - start) * px_per_s)
            y = y_of(n.pitch)
            draw.rectangle([x0, y, x1, y + row - 1], fill=colour)
    label = f"{title}  human" if title else "human"
    draw.text((margin_left, 4), label, fill=HUMAN_COLOUR)
    draw.text((margin_left + draw.textlength(label) + 12, 4), "sideman", fill=AI_COLOUR)
    return image


def write_piano_roll(path: Path, human: list[Event], ai: list[Note], title: str = "") -> None:
    buffer = io.BytesIO()
    draw_piano_roll(human, ai, title).save(buffer, format="PNG")
    write_atomically(Path(path), buffer.getvalue())
