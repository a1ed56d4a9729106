"""Calls and reference answers, as `../shared/docs/MUSICIANSHIP.md` defines them.

- Horn calls: a WJazzD solo split at rests of 0.7 s or more; phrases 1.5–8 s long with at least
  5 notes, one or two per file (the first, and the middle one). Shorter rests inside are breaths.
- Mehldau pairs: a PiJAMA performance split where no new key goes down for 0.5 s (keys still held
  are cut where the next phrase starts); two consecutive phrases both 1.5–10 s long are a call and
  his own answer.

Each call is shifted to start at CALL_START_S, so it can be played alone into a fresh session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sideman.midi_files import MidiFileError, read_performance
from sideman.model.events import Note
from sideman_train.corpus import CorpusError, list_performances

HORN_REST_S = 0.7
HORN_SECONDS = (1.5, 8.0)
PIANO_REST_S = 0.5
PIANO_SECONDS = (1.5, 10.0)
MIN_NOTES = 5
CALL_START_S = 1.0


@dataclass(frozen=True)
class Call:
    source: str                          # file name and phrase number
    notes: tuple[Note, ...]              # starting at CALL_START_S
    reference: tuple[Note, ...] = ()     # what the pianist played next (Mehldau pairs), same clock

    @property
    def last_release_s(self) -> float:
        return max(n.onset_s + n.duration_s for n in self.notes)


def _notes(path: Path) -> list[Note]:
    return sorted((e for e in read_performance(path) if isinstance(e, Note)), key=lambda n: (n.onset_s, n.pitch))


def split_at_rests(notes: list[Note], rest_s: float) -> list[list[Note]]:
    """Horn lines: a phrase ends where every note has ended and nothing starts for rest_s."""
    phrases, current, end = [], [], None
    for note in notes:
        if current and note.onset_s - end >= rest_s:
            phrases.append(current)
            current = []
        current.append(note)
        end = note.onset_s + note.duration_s if len(current) == 1 else max(end, note.onset_s + note.duration_s)
    if current:
        phrases.append(current)
    return phrases


def rests_of(notes) -> list[tuple[float, float, float]]:
    """(when every key is up, how long until the next note, the phrase so far: from the first
    onset to that release) for each rest between the notes, and after the last (inf)."""
    out, end = [], None
    ordered = sorted(notes, key=lambda n: n.onset_s)
    for note in ordered:
        if end is not None and note.onset_s > end:
            out.append((end, note.onset_s - end, end - ordered[0].onset_s))
        end = note.onset_s + note.duration_s if end is None else max(end, note.onset_s + note.duration_s)
    if ordered:
        out.append((end, float("inf"), end - ordered[0].onset_s))
    return out


def split_at_onset_gaps(notes: list[Note], gap_s: float) -> list[list[Note]]:
    """Piano: a phrase ends where no new key goes down for gap_s; notes still held are cut where
    the next phrase starts."""
    groups, current = [], []
    for note in notes:
        if current and note.onset_s - current[-1].onset_s >= gap_s:
            groups.append(current)
            current = []
        current.append(note)
    if current:
        groups.append(current)
    cut = []
    for i, group in enumerate(groups):
        next_start = groups[i + 1][0].onset_s if i + 1 < len(groups) else float("inf")
        cut.append([Note(n.onset_s, n.pitch, n.velocity, min(n.duration_s, next_start - n.onset_s)) for n in group])
    return cut


def _span(phrase: list[Note]) -> float:
    return max(n.onset_s + n.duration_s for n in phrase) - phrase[0].onset_s


def _shifted(notes, by: float) -> tuple[Note, ...]:
    return tuple(Note(n.onset_s - by, n.pitch, n.velocity, n.duration_s) for n in notes)


def _readable(paths):
    """(path, notes) for each file that reads; a broken file is skipped."""
    for path in paths:
        try:
            yield path, _notes(path)
        except MidiFileError:
            continue


def horn_calls(folder: Path, per_file: int = 2) -> list[Call]:
    """Calls from a folder of monophonic solos (none when it holds no MIDI files)."""
    try:
        paths = [p.path for p in list_performances(folder, pijama=False)]
    except CorpusError:
        return []
    calls = []
    for path, notes in _readable(paths):
        usable = [p for p in split_at_rests(notes, HORN_REST_S)
                  if len(p) >= MIN_NOTES and HORN_SECONDS[0] <= _span(p) <= HORN_SECONDS[1]]
        picked = [0, len(usable) // 2][:per_file] if usable else []
        for k in sorted(set(picked)):
            phrase = usable[k]
            calls.append(Call(f"{path.name}#{k}", _shifted(phrase, phrase[0].onset_s - CALL_START_S)))
    return calls


def piano_pairs(paths: list[Path], per_file: int | None = None) -> list[Call]:
    """(call, his own answer) pairs from solo piano files; per_file=None keeps every pair."""
    calls = []
    for path, notes in _readable(paths):
        phrases = split_at_onset_gaps(notes, PIANO_REST_S)
        kept = 0
        for k, (call, answer) in enumerate(zip(phrases, phrases[1:])):
            if len(call) < MIN_NOTES or len(answer) < MIN_NOTES:
                continue
            if not all(PIANO_SECONDS[0] <= _span(p) <= PIANO_SECONDS[1] for p in (call, answer)):
                continue
            by = call[0].onset_s - CALL_START_S
            calls.append(Call(f"{path.name}#{k}", _shifted(call, by), _shifted(answer, by)))
            kept += 1
            if per_file is not None and kept >= per_file:
                break
    return calls


def mehldau_files(pijama_root: Path, artist: str = "Brad Mehldau", split: str = "val") -> list[Path]:
    return [p.path for p in list_performances(pijama_root, artist, split, pijama=True)]
