"""Beat-tracking evaluation on a POP909-style folder: python -m sideman_train.eval_beats DIR [--limit N] [--json]

Layout: one subfolder per song with one *.mid and beat_midi.txt. beat_midi.txt has one line per beat
(a quarter note of the MIDI file's tempo map): `time_s  flag2  flag4`. In POP909 flag2 is 1 on
every other beat (first beat of a 2/4 bar; odd bars break the pattern now and then) and flag4 on the
first beat of a 4/4 bar (every 4 beats; every 6 in 22 songs). Only the times are used here.

Every note of the file is fed as an onset with its velocity and pitch (MELODY, BRIDGE and PIANO
together): that is what a pianist's two hands give the box, and the accompaniment carries most of
the pulse. Tapped beats are scored against the annotation with the usual beat F-measure (±70 ms,
one-to-one matching, as mir_eval.beat.f_measure), both sequences trimmed to t >= 5 s as is common
practice (the tracker gets its first seconds to lock on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from sideman.listen.tempo import BeatTracker
from sideman.midi_files import MidiFileError, read_performance
from sideman.model.events import Note
from sideman_train.listen_baselines import FixedTempoBaseline, tap_beats, tap_beats_with_tempo

TOLERANCE_S = 0.07
SKIP_S = 5.0
TEMPO_TOLERANCE = 0.04
BASELINE_BPM = 120.0


def trim_beats(beats: Sequence[float], min_s: float = SKIP_S) -> list[float]:
    return [b for b in beats if b >= min_s]


def f_measure(reference_s: Sequence[float], estimated_s: Sequence[float], tolerance_s: float = TOLERANCE_S) -> float:
    """Beat F-measure: each reference beat matches at most one estimated beat within ±tolerance.

    Both lists sorted. With a fixed symmetric window the greedy earliest-first matching is a maximum
    matching (each beat's partners form a window that only moves forward), as mir_eval's."""
    if not reference_s or not estimated_s:
        return 0.0
    matched = i = j = 0
    while i < len(reference_s) and j < len(estimated_s):
        gap = estimated_s[j] - reference_s[i]
        if gap < -tolerance_s:
            j += 1
        elif gap > tolerance_s:
            i += 1
        else:
            matched += 1
            i += 1
            j += 1
    if matched == 0:
        return 0.0
    precision, recall = matched / len(estimated_s), matched / len(reference_s)
    return 2 * precision * recall / (precision + recall)


def f_measure_any_octave(reference_s: Sequence[float], estimated_s: Sequence[float]) -> float:
    """Best F against the annotation, its double-time (midpoints added) and half-time (odd or even
    beats) versions: phase quality regardless of the metrical level chosen."""
    doubled = sorted(list(reference_s) + [(a + b) / 2 for a, b in zip(reference_s, reference_s[1:])])
    levels = [list(reference_s), doubled, list(reference_s[0::2]), list(reference_s[1::2])]
    return max(f_measure(level, estimated_s) for level in levels)


def read_annotated_beats(path: Path) -> list[float]:
    beats = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields:
            beats.append(float(fields[0]))
    if len(beats) < 2 or any(b <= a for a, b in zip(beats, beats[1:])):
        raise ValueError("fewer than two beats or times not increasing")
    return beats


def median_tempo(beats: Sequence[float]) -> float:
    return 60.0 / statistics.median(b - a for a, b in zip(beats, beats[1:]))


def evaluate_song(midi_path: Path, beats_path: Path) -> dict:
    reference = read_annotated_beats(beats_path)
    onsets = [(e.onset_s, e.velocity, e.pitch) for e in read_performance(midi_path) if isinstance(e, Note)]
    if len(onsets) < 8:
        raise ValueError(f"only {len(onsets)} notes")
    end_s = reference[-1] + TOLERANCE_S
    tracker = BeatTracker()
    tapped = tap_beats_with_tempo(onsets, tracker, until_s=end_s)
    ours = [beat for beat, _bpm in tapped]
    tempos = [bpm for beat, bpm in tapped if beat >= SKIP_S]  # the tempo it believed at each beat
    baseline = tap_beats(onsets, FixedTempoBaseline(BASELINE_BPM), until_s=end_s)
    ref = trim_beats(reference)
    return {
        "f_ours": f_measure(ref, trim_beats(ours)),
        "f_baseline": f_measure(ref, trim_beats(baseline)),
        "f_ours_any_octave": f_measure_any_octave(ref, trim_beats(ours)),
        "tempo_ours": statistics.median(tempos) if tempos else float("nan"),
        "tempo_annotated": median_tempo(reference),
    }


def _tempo_match(ours: float, annotated: float, factors: Sequence[float]) -> bool:
    return any(abs(ours / (annotated * f) - 1) <= TEMPO_TOLERANCE for f in factors)


def evaluate_folder(folder: Path, limit: int | None = None, progress: bool = False) -> dict:
    """Mean beat F (ours, fixed-tempo baseline), tempo accuracy, counts and skipped songs."""
    started = time.monotonic()
    folder = Path(folder)
    songs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if limit is not None:
        songs = songs[:limit]
    results, skipped = {}, {}
    for n, song in enumerate(songs, start=1):
        midis = sorted(song.glob("*.mid"))
        beats_path = song / "beat_midi.txt"
        try:
            if len(midis) != 1:
                raise ValueError(f"{len(midis)} .mid files")
            if not beats_path.is_file():
                raise ValueError("no beat_midi.txt")
            results[song.name] = evaluate_song(midis[0], beats_path)
        except (MidiFileError, ValueError, OSError) as exc:
            skipped[song.name] = str(exc)
            if progress:
                print(f"skip {song.name}: {exc}", file=sys.stderr)
        if progress and n % 25 == 0:
            print(f"{n}/{len(songs)} songs, {time.monotonic() - started:.0f} s", file=sys.stderr)
    rows = list(results.values())

    def mean(key: str) -> float | None:
        return round(statistics.fmean(r[key] for r in rows), 4) if rows else None

    def share(factors: Sequence[float], key: str = "tempo_ours") -> float | None:
        hits = sum(_tempo_match(r[key], r["tempo_annotated"], factors) for r in rows)
        return round(hits / len(rows), 4) if rows else None

    for r in rows:
        r["tempo_baseline"] = BASELINE_BPM

    return {
        "songs": len(songs),
        "evaluated": len(rows),
        "skipped": skipped,
        "f_measure_ours": mean("f_ours"),
        "f_measure_baseline": mean("f_baseline"),
        "f_measure_ours_any_octave": mean("f_ours_any_octave"),
        "songs_ours_better": sum(r["f_ours"] > r["f_baseline"] for r in rows),
        "tempo_accuracy": share((1.0,)),
        "tempo_accuracy_octave": share((0.5, 1.0, 2.0)),
        "tempo_double": share((2.0,)),  # octave errors, ours at twice the annotated tempo ...
        "tempo_half": share((0.5,)),    # ... and at half of it
        "tempo_accuracy_baseline": share((1.0,), "tempo_baseline"),
        "tempo_accuracy_octave_baseline": share((0.5, 1.0, 2.0), "tempo_baseline"),
        "tempo_tolerance": TEMPO_TOLERANCE,
        "baseline_bpm": BASELINE_BPM,
        "tolerance_s": TOLERANCE_S,
        "skip_first_s": SKIP_S,
        "seconds": round(time.monotonic() - started, 1),
        "per_song": {name: {k: round(v, 4) if v == v else None for k, v in r.items()}  # NaN: no beat tapped
                     for name, r in results.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sideman_train.eval_beats", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="only the first N songs")
    parser.add_argument("--json", action="store_true", help="the full report with per-song figures")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"not a folder: {args.folder}", file=sys.stderr)
        return 2
    report = evaluate_folder(args.folder, args.limit, progress=not args.json)
    if not args.json:
        report.pop("per_song")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
