"""Human parts written in code for sample duets (the model card's and the README's rendered ones),
so no corpus material ends up in a shipped file."""

from __future__ import annotations

from sideman.model.events import Note


def ii_v_i_line(start_s: float = 0.0, beat_s: float = 0.45) -> list[Note]:
    """A bebop-ish eighth-note line over Dm7 | G7 | Cmaj7 with a held last note."""
    pitches = [62, 65, 69, 72, 71, 69, 67, 65, 64, 67, 71, 74, 73, 71, 70, 67, 64]
    notes = [Note(start_s + i * beat_s / 2, p, 84 - 6 * (i % 2), beat_s * 0.45) for i, p in enumerate(pitches)]
    notes[-1] = Note(notes[-1].onset_s, 64, 80, beat_s * 2)
    return notes


def slow_melody(start_s: float = 0.0, beat_s: float = 0.5) -> list[Note]:
    """A slow melody in the right hand (for comping under it)."""
    tune = [(72, 2), (71, 1), (69, 1), (67, 3), (65, 1), (64, 2), (62, 2), (60, 4)]
    out, t = [], start_s
    for pitch, beats in tune:
        out.append(Note(t, pitch, 78, beats * beat_s * 0.9))
        t += beats * beat_s
    return out


def blues_call(start_s: float = 0.0, beat_s: float = 0.45) -> list[Note]:
    """A swung blues phrase in F (long-short eighths), ending on a held root."""
    pitches = [65, 68, 70, 71, 72, 75, 77, 75, 72, 70, 68, 65]
    out, t = [], start_s
    for i, pitch in enumerate(pitches):
        length = beat_s * (0.62 if i % 2 == 0 else 0.38)
        out.append(Note(t, pitch, 88 if i % 2 == 0 else 70, length * 0.85))
        t += length
    out[-1] = Note(out[-1].onset_s, 65, 82, beat_s * 2)
    return out
