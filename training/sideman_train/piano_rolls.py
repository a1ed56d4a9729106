"""Piano rolls of calls and their answers, one row per call, drawn with Pillow (as plots.py).

The call is grey, what the AI played inside the call red (it should be empty), the answer blue;
a thin line marks the call's last key release."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from sideman.paths import write_atomically
from sideman_train.plots import TEXT, _font

ROW_HEIGHT, WIDTH, LEFT = 150, 1000, 10
SECONDS = 14.0
CALL, INSIDE, ANSWER, RELEASE = (120, 120, 120), (200, 40, 40), (52, 101, 164), (230, 120, 30)


def draw_calls(calls, played, png_path: Path, title: str) -> None:
    rows = max(1, len(calls))
    image = Image.new("RGB", (WIDTH, 30 + rows * ROW_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((LEFT, 6), title, fill=TEXT, font=_font(16))
    x_of = lambda t: LEFT + (WIDTH - 2 * LEFT) * min(t, SECONDS) / SECONDS   # noqa: E731
    for row, (call, result) in enumerate(zip(calls, played)):
        top = 30 + row * ROW_HEIGHT
        release = call.last_release_s
        ai = [(n, INSIDE if n.onset_s < release else ANSWER) for n in result["answer"] + result.get("inside_notes", [])]
        notes = [(n, CALL) for n in call.notes] + ai
        pitches = [n.pitch for n, _ in notes]
        low, high = min(pitches) - 1, max(pitches) + 1
        y_of = lambda p: top + ROW_HEIGHT - 8 - (ROW_HEIGHT - 24) * (p - low) / max(1, high - low)   # noqa: E731
        draw.text((LEFT, top + 2), call.source, fill=TEXT, font=_font(11))
        draw.line([(x_of(release), top + 14), (x_of(release), top + ROW_HEIGHT - 4)], fill=RELEASE)
        for note, colour in notes:
            y = y_of(note.pitch)
            draw.rectangle([x_of(note.onset_s), y - 2, max(x_of(note.onset_s) + 2, x_of(note.onset_s + note.duration_s)), y + 2],
                           fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomically(Path(png_path), buffer.getvalue())
