"""Musical metrics for `sideman-train eval`: does the generated part sound like the style, and does it
fit the human's harmony? Pure numpy over lists of events (sideman.model.events Note/Pedal with .voice);
no corpus, no model, deterministic, and any MIDI will do.

Style profile
    Five histograms over the notes of one voice (or all notes):
      pitch_class  12 bins, C..B.
      ioi          inter-onset interval between successive distinct onsets (notes within ONSET_GROUP_S
                   of an onset's first note are one onset, so a chord is one onset); IOI_BINS
                   log-spaced bins from 20 ms to 4 s, longer gaps go in the last bin.
      velocity     16 bins of 8 (the codec's velocity bins).
      polyphony    keys held at each distinct onset: the onset's own notes plus earlier notes still held
                   SOUNDING_TOLERANCE_S after it (so legato overlap does not count as a second voice);
                   bins 1..7 and 8+. Keys only; the sustain pedal is not counted.
      register     pitch 21..108 (the piano) in 2-semitone bins; pitches outside are clipped in.
    Counts are kept, so several performances add up (StyleProfile.add, profile_of_many) before the
    histograms are normalised. Two profiles compare by overlap area per histogram: sum(min(p, q)),
    1 = identical distributions, 0 = disjoint.

Harmonic coherence
    Share of the AI's note onsets whose pitch class lies in the human's current chord scale. For each
    AI note at time t, the human notes *started* in [t - window_s, t) (strictly before: the sideman
    can only react to what it has heard) give a pitch-class profile weighted by how long each note has
    sounded by t (at least MIN_WEIGHT_S; repeats of one key add up, octave doublings do not: a pitch
    class weighs as its heaviest key). sideman.listen.chords.name_chord names a chord from it (no bass
    hint); the allowed pitch classes are that chord's scale (Chord.scale_pitch_classes) plus its chord
    tones, or, when no chord can be named (one pitch class, say), the pitch classes the human played.
    AI notes with no human note in the window are not counted; None when nothing counted.

    coherence_of_real gives the same measure for real playing, to compare generated output against:
    a solo performance is relabelled as a duet, notes at/above MIDI 60 (middle C; mostly the right
    hand) as HUMAN and notes below it (mostly the left hand) as AI, and then scored exactly like a
    duet. It answers "how often does a real pianist's left hand sit inside the harmony the right hand
    implies", a reference level for the sideman's number rather than an upper bound of 1.0.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from sideman.listen.chords import name_chord
from sideman.model.events import AI, HUMAN, VELOCITY_BINS, Event, Note

HISTOGRAMS = ("pitch_class", "ioi", "velocity", "polyphony", "register")

ONSET_GROUP_S = 0.03          # notes this close to an onset's first note are one onset
SOUNDING_TOLERANCE_S = 0.05   # an earlier note must still be held this long after an onset to count
IOI_BINS = 24
IOI_EDGES_S = np.geomspace(0.02, 4.0, IOI_BINS + 1)  # bin i: [edge i, edge i+1); outside: clipped
MAX_POLYPHONY = 8             # last polyphony bin is 8 or more
LOWEST_PITCH, HIGHEST_PITCH, REGISTER_STEP = 21, 108, 2
REGISTER_BINS = (HIGHEST_PITCH - LOWEST_PITCH) // REGISTER_STEP + 1  # 44

SIZES = {"pitch_class": 12, "ioi": IOI_BINS, "velocity": VELOCITY_BINS, "polyphony": MAX_POLYPHONY,
         "register": REGISTER_BINS}

COHERENCE_WINDOW_S = 2.0
MIN_WEIGHT_S = 0.05           # a human note just struck still counts this much
REAL_SPLIT_PITCH = 60         # coherence_of_real: HUMAN at/above, AI below


# ---------------------------------------------------------------------------------------------
# Style profile

def _empty_counts() -> dict[str, np.ndarray]:
    return {name: np.zeros(size) for name, size in SIZES.items()}


@dataclass(eq=False)
class StyleProfile:
    """Histograms of one voice's notes over one or more performances.

    counts holds the raw counts per histogram (name -> array); the properties pitch_class, ioi,
    velocity, polyphony and register are the normalised histograms (sum 1, or all zeros when that
    histogram has no data, e.g. ioi of a single note). notes / performances: how much went in."""

    counts: dict[str, np.ndarray] = field(default_factory=_empty_counts)
    notes: int = 0
    performances: int = 0

    def histogram(self, name: str) -> np.ndarray:
        """The normalised histogram `name` (one of HISTOGRAMS)."""
        if name not in SIZES:
            raise ValueError(f"unknown histogram {name!r}; one of {', '.join(HISTOGRAMS)}")
        c = self.counts[name]
        total = float(c.sum())
        return c / total if total > 0 else np.zeros_like(c)

    pitch_class = property(lambda self: self.histogram("pitch_class"))
    ioi = property(lambda self: self.histogram("ioi"))
    velocity = property(lambda self: self.histogram("velocity"))
    polyphony = property(lambda self: self.histogram("polyphony"))
    register = property(lambda self: self.histogram("register"))

    def add(self, other: "StyleProfile") -> "StyleProfile":
        """Adds other's counts to this profile (in place) and returns it."""
        for name in HISTOGRAMS:
            self.counts[name] = self.counts[name] + other.counts[name]
        self.notes += other.notes
        self.performances += other.performances
        return self

    def to_dict(self) -> dict:
        """JSON-ready: note and performance counts and the normalised histograms as lists."""
        return {"notes": self.notes, "performances": self.performances,
                **{name: [round(float(x), 6) for x in self.histogram(name)] for name in HISTOGRAMS}}


def _notes_of(events: Iterable[Event], voice: int | None) -> list[Note]:
    notes = [e for e in events if isinstance(e, Note) and (voice is None or e.voice == voice)]
    notes.sort(key=lambda n: (n.onset_s, n.pitch, n.duration_s, n.velocity))
    return notes


def _onset_groups(notes: Sequence[Note]) -> list[list[Note]]:
    """Notes (sorted by onset) grouped into distinct onsets: within ONSET_GROUP_S of a group's first."""
    groups: list[list[Note]] = []
    for n in notes:
        if groups and n.onset_s - groups[-1][0].onset_s <= ONSET_GROUP_S:
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups


def _count(events: Iterable[Event], voice: int | None) -> StyleProfile:
    notes = _notes_of(events, voice)
    profile = StyleProfile()
    if not notes:
        return profile
    c = profile.counts
    pitches = np.array([n.pitch for n in notes])
    c["pitch_class"] += np.bincount(pitches % 12, minlength=12)
    c["velocity"] += np.bincount(np.clip(np.array([n.velocity for n in notes]) // 8, 0, VELOCITY_BINS - 1),
                                 minlength=VELOCITY_BINS)
    register = (np.clip(pitches, LOWEST_PITCH, HIGHEST_PITCH) - LOWEST_PITCH) // REGISTER_STEP
    c["register"] += np.bincount(register, minlength=REGISTER_BINS)

    groups = _onset_groups(notes)
    starts = np.array([g[0].onset_s for g in groups])
    if len(starts) > 1:
        idx = np.searchsorted(IOI_EDGES_S, np.diff(starts), side="right") - 1
        c["ioi"] += np.bincount(np.clip(idx, 0, IOI_BINS - 1), minlength=IOI_BINS)

    held: list[float] = []  # end times of notes from earlier onsets (min-heap)
    for group in groups:
        t0 = group[0].onset_s
        while held and held[0] <= t0 + SOUNDING_TOLERANCE_S:
            heapq.heappop(held)
        sounding = len(held) + len(group)
        c["polyphony"][min(sounding, MAX_POLYPHONY) - 1] += 1
        for n in group:
            heapq.heappush(held, n.onset_s + max(0.0, n.duration_s))
    profile.notes = len(notes)
    profile.performances = 1
    return profile


def style_profile(events: Iterable[Event], voice: int | None = None) -> StyleProfile:
    """Profile of the notes of `voice` (HUMAN, AI, or None for all notes) in one performance.
    Raises ValueError when there is no such note."""
    profile = _count(events, voice)
    if profile.notes == 0:
        raise ValueError("no notes" + ("" if voice is None else f" of voice {voice}") + " to profile")
    return profile


def profile_of_many(performances: Iterable[Iterable[Event]], voice: int | None = None) -> StyleProfile:
    """One profile summed over several performances (counts add, then normalise). Performances with
    no note of `voice` are skipped (not counted in .performances); ValueError when none has any."""
    total = StyleProfile()
    for events in performances:
        one = _count(events, voice)
        if one.notes:
            total.add(one)
    if total.notes == 0:
        raise ValueError("no notes" + ("" if voice is None else f" of voice {voice}") + " in any performance")
    return total


def overlap_area(p, q) -> float:
    """sum(min(p_i, q_i)) of two normalised histograms of the same length: 1 = identical, 0 = disjoint."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    return float(np.minimum(p, q).sum())


def compare_profiles(a: StyleProfile, b: StyleProfile) -> dict[str, float | None]:
    """Overlap area per histogram (keys HISTOGRAMS) plus 'mean' over them. A histogram empty on
    either side (e.g. ioi of a one-note performance) gives None and is left out of the mean; mean is
    None when all are."""
    out: dict[str, float | None] = {}
    for name in HISTOGRAMS:
        if a.counts[name].sum() > 0 and b.counts[name].sum() > 0:
            out[name] = overlap_area(a.histogram(name), b.histogram(name))
        else:
            out[name] = None
    values = [v for v in out.values() if v is not None]
    out["mean"] = float(np.mean(values)) if values else None
    return out


# ---------------------------------------------------------------------------------------------
# Harmonic coherence

def allowed_pitch_classes(human_notes: Sequence[Note], t_s: float) -> frozenset[int]:
    """The pitch classes that fit the human's harmony at t_s, from human notes started before t_s
    (see the module doc): the named chord's scale plus its tones, else the pitch classes played."""
    per_pitch: dict[int, float] = {}
    for n in human_notes:
        sounded = min(max(0.0, n.duration_s), t_s - n.onset_s)
        per_pitch[n.pitch] = per_pitch.get(n.pitch, 0.0) + max(MIN_WEIGHT_S, sounded)
    weights = np.zeros(12)
    for pitch, w in per_pitch.items():
        weights[pitch % 12] = max(weights[pitch % 12], w)
    if not weights.any():
        return frozenset()
    chord = name_chord(weights)
    if chord is None:
        return frozenset(int(pc) for pc in np.flatnonzero(weights))
    return chord.scale_pitch_classes() | chord.pitch_classes()


def coherence_counts(events: Iterable[Event], window_s: float = COHERENCE_WINDOW_S) -> tuple[int, int]:
    """(AI onsets inside the human's chord scale, AI onsets counted). Sum these over performances to
    pool them; see harmonic_coherence."""
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, not {window_s}")
    events = list(events)
    human = _notes_of(events, HUMAN)
    ai = _notes_of(events, AI)
    onsets = [n.onset_s for n in human]
    inside = counted = 0
    allowed: frozenset[int] = frozenset()
    last_t = None
    for note in ai:
        t = note.onset_s
        if t != last_t:
            last_t = t
            lo, hi = bisect.bisect_left(onsets, t - window_s), bisect.bisect_left(onsets, t)
            allowed = allowed_pitch_classes(human[lo:hi], t) if hi > lo else frozenset()
        if not allowed:
            continue
        counted += 1
        inside += int(note.pitch % 12 in allowed)
    return inside, counted


def harmonic_coherence(events: Iterable[Event], window_s: float = COHERENCE_WINDOW_S) -> float | None:
    """Share (0..1) of AI note onsets whose pitch class lies in the human's current chord scale;
    None when no AI note had a human note in the window before it."""
    inside, counted = coherence_counts(events, window_s)
    return inside / counted if counted else None


def split_real(events: Iterable[Event], split_pitch: int = REAL_SPLIT_PITCH) -> list[Event]:
    """A solo performance relabelled as a duet: notes at/above split_pitch HUMAN, below it AI.
    Pedal events are kept as they are (they do not enter the coherence)."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Note):
            voice = HUMAN if e.pitch >= split_pitch else AI
            e = Note(e.onset_s, e.pitch, e.velocity, e.duration_s, voice)
        out.append(e)
    return out


def coherence_of_real(events: Iterable[Event], window_s: float = COHERENCE_WINDOW_S,
                      split_pitch: int = REAL_SPLIT_PITCH) -> float | None:
    """harmonic_coherence of a real solo performance split at split_pitch (upper notes = HUMAN, lower
    notes = AI): the same definition applied to real playing, a reference for generated duets."""
    return harmonic_coherence(split_real(events, split_pitch), window_s)
