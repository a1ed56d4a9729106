"""Chord-naming accuracy on a POP909-shaped folder: ChordListener against TemplateBaseline.

Layout: one subfolder per song with one `*.mid` and `chord_midi.txt` (lines `start_s<TAB>end_s<TAB>label`,
Harte labels such as `B:maj`, `C#:min7`, `A:min/b3`, `E:sus4(b7)`; `N` is no chord).

The player is all tracks (MELODY, BRIDGE, PIANO) together: a solo pianist plays the tune and its
accompaniment at once, so the whole arrangement is what the box hears from one pair of hands, and the
annotations describe the harmony of the whole song. (`tracks=` picks fewer, e.g. {"PIANO", "BRIDGE"}.)

Both listeners hear the events causally, in time order, and are asked every STEP_S; each answer
stands for STEP_S of labelled time. Compared: root + quality in a shared reduced vocabulary, and root
alone. `N` segments are left out; so are labels whose quality has no reduced class (counted).

Reduced vocabulary (both sides map onto it; inversions and slash basses are ignored):
    maj   <- Harte maj, maj6, 6, add9, maj(9)        | ours maj, 6, 6/9
    min   <- min, min6, minmaj7, min(9)              | m, m6, mMaj7
    7     <- 7, 9, 11, 13                            | 7, 9, 13, 7b9, 7#9, 7alt
    maj7  <- maj7, maj9                              | maj7
    min7  <- min7, min9, min11                       | m7
    dim   <- dim                                     | dim
    hdim7 <- hdim7                                   | m7b5
    dim7  <- dim7                                    | dim7
    aug   <- aug                                     | aug
    sus   <- sus2, sus4, sus4(b7), 7sus4             | sus2, sus4, 7sus4
A silent answer (None) counts as wrong.

    python -m sideman_train.eval_chords DIR [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import time
from pathlib import Path

from sideman.listen.chords import Chord, ChordListener
from sideman.midi_files import MidiFileError, read_performance
from sideman.model.events import Note, Pedal
from sideman_train.listen_baselines import TemplateBaseline

STEP_S = 0.1

HARTE_REDUCED = {
    "maj": "maj", "maj6": "maj", "6": "maj", "add9": "maj", "maj(9)": "maj",
    "min": "min", "min6": "min", "minmaj7": "min", "min(9)": "min",
    "7": "7", "9": "7", "11": "7", "13": "7",
    "maj7": "maj7", "maj9": "maj7",
    "min7": "min7", "min9": "min7", "min11": "min7",
    "dim": "dim", "hdim7": "hdim7", "dim7": "dim7", "aug": "aug",
    "sus2": "sus", "sus4": "sus", "sus4(b7)": "sus", "7sus4": "sus",
}
OURS_REDUCED = {
    "maj": "maj", "6": "maj", "6/9": "maj",
    "m": "min", "m6": "min", "mMaj7": "min",
    "7": "7", "9": "7", "13": "7", "7b9": "7", "7#9": "7", "7alt": "7",
    "maj7": "maj7", "m7": "min7", "m7b5": "hdim7", "dim": "dim", "dim7": "dim7", "aug": "aug",
    "sus2": "sus", "sus4": "sus", "7sus4": "sus",
}
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

Target = tuple[int, str]  # (root pitch class, reduced quality)


def parse_harte(label: str) -> Target | None | str:
    """(root, reduced quality); None for N; the quality string itself when it has no reduced class."""
    label = label.strip()
    if label in ("N", "X", ""):
        return None
    root_name, _, quality = label.partition(":")
    quality = (quality or "maj").split("/")[0]
    root = _LETTERS[root_name[0].upper()] + root_name[1:].count("#") - root_name[1:].count("b")
    reduced = HARTE_REDUCED.get(quality)
    return (root % 12, reduced) if reduced else quality


def read_labels(path: Path) -> list[tuple[float, float, Target | None | str]]:
    segments = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        start, end, label = line.split("\t")[:3]
        segments.append((float(start), float(end), parse_harte(label)))
    segments.sort(key=lambda s: s[0])
    return segments


def _timeline(events) -> list[tuple[float, int, int, int]]:
    """(time, order, pitch, velocity): at equal times note-offs, pedal-up, note-ons, pedal-down.
    Pedal rows carry pitch -1 and velocity 1 (down) or 0 (up)."""
    rows = []
    for e in events:
        if isinstance(e, Note):
            rows.append((e.onset_s, 2, e.pitch, e.velocity))
            rows.append((e.onset_s + e.duration_s, 0, e.pitch, 0))
        elif isinstance(e, Pedal):
            rows.append((e.onset_s, 3 if e.down else 1, -1, int(e.down)))
    rows.sort()
    return rows


def _reduced(chord: Chord | None) -> Target | None:
    return None if chord is None else (chord.root, OURS_REDUCED[chord.quality])


def evaluate_song(midi_path: Path, labels_path: Path, tracks: set[str] | None = None) -> dict:
    """Seconds of labelled time and seconds right (root+quality, root) for each listener."""
    segments = read_labels(labels_path)
    rows = _timeline(read_performance(midi_path, track_names=tracks))
    listeners = {"ours": ChordListener(), "baseline": TemplateBaseline()}
    tally = {name: {"root_quality": 0.0, "root": 0.0} for name in listeners}
    by_quality: dict[str, dict[str, float]] = {}
    labelled = unmapped = 0.0
    starts = [s[0] for s in segments]
    end = segments[-1][1] if segments else 0.0
    i = 0
    step = 0
    while True:
        q = (step + 0.5) * STEP_S
        step += 1
        if q >= end:
            break
        while i < len(rows) and rows[i][0] <= q:
            t, order, pitch, value = rows[i]
            for listener in listeners.values():
                if order == 2:
                    listener.note_on(t, pitch, value)
                elif order == 0:
                    listener.note_off(t, pitch)
                else:
                    listener.sustain(t, bool(value))
            i += 1
        k = bisect.bisect_right(starts, q) - 1
        if k < 0 or q >= segments[k][1] or segments[k][2] is None:
            continue
        target = segments[k][2]
        if isinstance(target, str):
            unmapped += STEP_S
            continue
        labelled += STEP_S
        cell = by_quality.setdefault(target[1], {"seconds": 0.0, "ours": 0.0, "baseline": 0.0})
        cell["seconds"] += STEP_S
        for name, listener in listeners.items():
            answer = _reduced(listener.chord(q))
            if answer is None:
                continue
            if answer[0] == target[0]:
                tally[name]["root"] += STEP_S
                if answer[1] == target[1]:
                    tally[name]["root_quality"] += STEP_S
                    cell[name] += STEP_S
    return {"labelled_s": labelled, "unmapped_s": unmapped, "right_s": tally, "by_quality": by_quality}


def _song_files(song: Path) -> tuple[Path, Path] | str:
    midis = sorted(song.glob("*.mid")) + sorted(song.glob("*.midi"))
    labels = song / "chord_midi.txt"
    if not midis:
        return "no .mid file"
    if not labels.is_file():
        return "no chord_midi.txt"
    return midis[0], labels


def evaluate_folder(folder: Path, limit: int | None = None, progress: bool = False,
                    tracks: set[str] | None = None) -> dict:
    """Accuracy (share of labelled time) of ChordListener and TemplateBaseline over a POP909-like folder."""
    started = time.monotonic()
    folder = Path(folder)
    songs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if limit is not None:
        songs = songs[:limit]
    right = {name: {"root_quality": 0.0, "root": 0.0} for name in ("ours", "baseline")}
    by_quality: dict[str, dict[str, float]] = {}
    labelled = unmapped = 0.0
    done = 0
    skipped = []
    for n, song in enumerate(songs, 1):
        files = _song_files(song)
        try:
            if isinstance(files, str):
                raise ValueError(files)
            result = evaluate_song(*files, tracks=tracks)
            if result["labelled_s"] <= 0:
                raise ValueError("no labelled chord time")
        except (MidiFileError, ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as exc:
            skipped.append({"song": song.name, "reason": str(exc) or type(exc).__name__})
            if progress:
                print(f"[{n}/{len(songs)}] {song.name}: skipped ({exc})", file=sys.stderr)
            continue
        done += 1
        labelled += result["labelled_s"]
        unmapped += result["unmapped_s"]
        for name in right:
            for measure in right[name]:
                right[name][measure] += result["right_s"][name][measure]
        for quality, cell in result["by_quality"].items():
            total = by_quality.setdefault(quality, {"seconds": 0.0, "ours": 0.0, "baseline": 0.0})
            for key in total:
                total[key] += cell[key]
        if progress:
            print(f"[{n}/{len(songs)}] {song.name}", file=sys.stderr)

    def share(x: float, whole: float) -> float:
        return round(x / whole, 4) if whole else 0.0

    return {
        "folder": str(folder),
        "tracks": sorted(tracks) if tracks else "all",
        "step_s": STEP_S,
        "songs": done,
        "skipped": skipped,
        "labelled_s": round(labelled, 1),
        "unmapped_s": round(unmapped, 1),
        "ours": {m: share(v, labelled) for m, v in right["ours"].items()},
        "baseline": {m: share(v, labelled) for m, v in right["baseline"].items()},
        "by_quality": {q: {"seconds": round(c["seconds"], 1), "ours": share(c["ours"], c["seconds"]),
                           "baseline": share(c["baseline"], c["seconds"])}
                       for q, c in sorted(by_quality.items(), key=lambda kv: -kv[1]["seconds"])},
        "run_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sideman_train.eval_chords", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="first N songs only")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--tracks", default=None, help="comma-separated track names (default: all)")
    parser.add_argument("--progress", action="store_true", help="one line per song on stderr")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"not a folder: {args.folder}", file=sys.stderr)
        return 2
    tracks = {t.strip() for t in args.tracks.split(",")} if args.tracks else None
    result = evaluate_folder(args.folder, args.limit, args.progress, tracks)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['songs']} songs, {result['labelled_s'] / 3600:.2f} h labelled, "
              f"{len(result['skipped'])} skipped, {result['run_s']} s")
        for name in ("ours", "baseline"):
            r = result[name]
            print(f"{name:9s} root+quality {r['root_quality']:.3f}   root {r['root']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
