"""Developing the call: an answer that starts from the player's own material.

A partner who listens picks up the last thing you played and takes it somewhere: the last motif
of the call (its top voice: the highest note of each onset), stated again as a sequence (moved
by a step, a third or a fourth of the key heard, its contour and rhythm kept), sometimes once
more as far again, sometimes turned upside down. This is GenJam's "smart echo" and Mehldau's own
habit; the voice (transformer or Markov) then continues from there, with the motif in its context.

After the opening the voice keeps leaning on the call's interval cells (pairs of consecutive
melodic intervals of its line): wherever its own line has just played the first interval of one
of the call's cells, the pitch that completes the cell is favoured (`cell_pitches`; the
transformer adds CELL_NATS × echo to its log-odds where it would plausibly play it anyway), and
a chord struck with that note goes under it. So the answer goes on working the player's
material, not only quoting it at the start.

How much is quoted is the *echo* control: 0 quotes nothing, 0.5 (the default) restates the last
five notes once, 1 restates the last six twice. The choice of transformation is drawn from a
generator seeded by the call itself, so the answer sampled ahead (before the phrase has surely
ended) and the one asked for when it has are the same. The sequence stays in the key heard: an
exact transposition when one keeps the motif in it (often a fourth or fifth), else a diatonic
sequence (a third may turn major or minor). Any chromatic step pulled the voice out of the key
(in-key share 0.82 → 0.69 on Mehldau's val calls).
"""

from __future__ import annotations

import zlib

import numpy as np

from sideman.model.events import AI, Note

CLUSTER_S = 0.03          # onsets closer than this are one event (a chord): its top note is the line
MAX_NOTE_S = 1.5
# Exact transpositions (semitones) that a sequence may take when they keep the motif as much in
# the key heard as it was: every interval stays (a fourth or fifth often fits, steps less often).
EXACT_STEPS = (-2, 2, -3, 3, -4, 4, -5, 5, -7, 7)
# Otherwise a diatonic sequence, in degrees of the key, with how often each is chosen: a step
# down or up, a third, a fourth less often. Without a key, the major scale's step sizes.
SEQUENCE_DEGREES = (-1, 1, -2, 2, -3, 3)
DEGREE_WEIGHTS = (0.25, 0.25, 0.15, 0.15, 0.1, 0.1)
C_MAJOR = frozenset((0, 2, 4, 5, 7, 9, 11))
INVERSION_SHARE = 0.15
# How strongly the continuation leans on the call's interval cells at echo 1 (log-odds, nats);
# echo 0.5 (the default) adds half. Chosen on 80 WJazzD horn calls that are not eval-answers'
# shared 40 (`eval-answers --offsets 5,11`; README, Design notes).
CELL_NATS = 8.0
SCALE_STEP = 2            # semitones: an interval up to this (not a repeat) is a step of a scale
PLAUSIBLE_NATS = 4.6      # cells are favoured only among pitches ≥ 1 % as likely as the likeliest


def top_line(notes) -> list[Note]:
    """The highest note of each onset cluster, in time order."""
    line: list[Note] = []
    cluster_start = None
    for note in sorted(notes, key=lambda n: (n.onset_s, n.pitch)):
        if line and note.onset_s - cluster_start <= CLUSTER_S:
            if note.pitch > line[-1].pitch:
                line[-1] = note
            continue
        cluster_start = note.onset_s
        line.append(note)
    return line


def interval_cells(notes) -> frozenset[tuple[int, int]]:
    """The line's characteristic interval cells: pairs of consecutive melodic intervals of its top
    voice with a leap or a repeated note in them. Two steps in a row (a scale run) are every
    line's; a listener hears their figure picked up only in a leap or a turn."""
    pitches = [n.pitch for n in top_line(notes)]
    intervals = [b - a for a, b in zip(pitches, pitches[1:])]
    return frozenset(cell for cell in zip(intervals, intervals[1:])
                     if not all(0 < abs(i) <= SCALE_STEP for i in cell))


def cell_pitches(line: list[int], cells: frozenset[tuple[int, int]]) -> list[int]:
    """The pitches that would complete one of `cells` after the last two notes of `line` (top
    voice pitches, oldest first), within 0..127."""
    if len(line) < 2 or not cells:
        return []
    last = line[-1]
    step = last - line[-2]
    return sorted({last + second for first, second in cells if first == step and 0 <= last + second <= 127})


def line_pitch_to_keep_on_top(notes, cells: frozenset[tuple[int, int]]) -> int | None:
    """The newest onset's line note, when it completed one of `cells` (notes in time order): a
    chord note struck with it goes under it, so that the cell stays the line a listener hears.
    None otherwise."""
    if not notes or not cells:
        return None
    newest = notes[-1].onset_s
    start = len(notes) - 1
    while start > 0 and newest - notes[start - 1].onset_s <= CLUSTER_S:
        start -= 1
    head = notes[start]
    before = [n.pitch for n in top_line(notes[max(0, start - 8):start])]
    return head.pitch if head.pitch in cell_pitches(before, cells) else None


def cell_bias_nats(echo: float) -> float:
    return CELL_NATS * min(1.0, max(0.0, echo))


def lean_on_cells(notes, cells: frozenset[tuple[int, int]], onset_s: float, echo: float, temperature: float,
                  pitch_logits: np.ndarray) -> None:
    """Steer an answer's next pitch (its logits, register already applied, changed in place)
    towards the call's cells: after the answer's own notes so far (`notes`, in time order), the
    pitch that completes a cell gains cell_bias_nats(echo), among the pitches the voice would
    play at least 1 % as readily as its likeliest (the call's figure, in the voice's style); a
    note struck with one that completed a cell goes under it."""
    nats = cell_bias_nats(echo)
    if nats <= 0 or not cells or not notes:
        return
    if onset_s - notes[-1].onset_s <= CLUSTER_S:   # a chord note, not the line's next note
        top = line_pitch_to_keep_on_top(notes, cells)
        if top is not None and np.isfinite(pitch_logits[:top]).any():
            pitch_logits[top + 1:128] = -np.inf
        return
    pitches = np.asarray(cell_pitches([n.pitch for n in top_line(notes[-8:])], cells), dtype=int)
    if len(pitches):
        plausible = pitch_logits[pitches] >= pitch_logits.max() - PLAUSIBLE_NATS
        # The same strength at any temperature: the sampler divides the logits by it.
        pitch_logits[pitches[plausible]] += nats * max(temperature, 1e-3)


def motif_size(echo: float) -> int:
    return 3 + int(round(3 * min(1.0, max(0.0, echo))))


def call_seed(notes, salt: int = 0) -> int:
    """A seed from the call's pitches and rhythm (the same call, the same development)."""
    data = ",".join(f"{n.pitch}:{round(n.onset_s * 100)}" for n in notes[-16:])
    return zlib.crc32(data.encode()) ^ (salt & 0xFFFFFFFF)


def develop_call(call, echo: float, register: tuple[int, int], seed: int,
                 scale: frozenset[int] = frozenset()) -> tuple[Note, ...]:
    """The answer's opening, onsets relative to the answer's start (the first at 0). Empty when
    echo is 0 or the call has fewer than three notes in its line. scale: the pitch classes of the
    key heard; the sequence stays in it (a sequence, not a modulation)."""
    if echo <= 0:
        return ()
    line = top_line(call)
    size = motif_size(echo)
    if len(line) < 3:
        return ()
    motif = line[-size:]
    rng = np.random.default_rng(seed)
    origin = motif[0].onset_s
    onsets = [n.onset_s - origin for n in motif]
    iois = np.diff(onsets)
    # The motif's last note is followed by the gap the motif itself moves in.
    restart = onsets[-1] + float(np.median(iois)) if len(iois) else 0.25
    degrees = int(rng.choice(SEQUENCE_DEGREES, p=np.array(DEGREE_WEIGHTS) / sum(DEGREE_WEIGHTS)))
    invert = rng.random() < INVERSION_SHARE
    statements = 1 if echo < 0.6 else 2
    original = [n.pitch for n in motif]
    bases = [original] * statements
    if invert:   # the last statement upside down (made tonal)
        bases[-1] = _in_scale([original[0] - (p - original[0]) for p in original], scale)
    exact = _exact_steps([p for base in bases for p in base], scale)
    shift = int(rng.choice(exact)) if exact else None
    opening: list[Note] = []
    for k, base in enumerate(bases):
        moved = [p + shift * (k + 1) for p in base] if shift is not None else sequenced(base, degrees * (k + 1), scale)
        pitches = _fold_into(moved, register)
        for note, onset, pitch in zip(motif, onsets, pitches):
            opening.append(Note(k * restart + onset, pitch, note.velocity, min(note.duration_s, MAX_NOTE_S), AI))
    return tuple(opening)


def _exact_steps(pitches: list[int], scale: frozenset[int]) -> list[int]:
    """Transpositions that leave no more of the motif outside the key than it had (twice, for
    a second statement as far again)."""
    if len(scale) < 5:
        return []

    def outside(shift):
        return sum((p + shift) % 12 not in scale for p in pitches)

    own = outside(0)
    return [s for s in EXACT_STEPS if outside(s) <= own and outside(2 * s) <= own]


def sequenced(pitches: list[int], degrees: int, scale: frozenset[int]) -> list[int]:
    """The motif moved by `degrees` steps of the scale (a diatonic sequence: it stays in the key,
    a third may turn major or minor); notes outside the scale move with the note before them.
    Without a scale, by the major scale's semitones (every interval kept)."""
    if len(scale) < 5:
        shift = _scale_step(60, degrees, C_MAJOR) - 60
        return [p + shift for p in pitches]
    moved = [_scale_step(p, degrees, scale) if p % 12 in scale else None for p in pitches]
    first = next((m - p for m, p in zip(moved, pitches) if m is not None), 0)
    out, shift = [], first
    for m, p in zip(moved, pitches):
        if m is None:
            out.append(p + shift)
        else:
            shift = m - p
            out.append(m)
    return out


def _scale_step(pitch: int, degrees: int, scale: frozenset[int]) -> int:
    step = 1 if degrees > 0 else -1
    for _ in range(abs(degrees)):
        pitch += step
        while pitch % 12 not in scale:
            pitch += step
    return pitch


def _in_scale(pitches: list[int], scale: frozenset[int]) -> list[int]:
    """Each pitch outside the scale moved a semitone down into it (an inversion made tonal)."""
    if len(scale) < 5:
        return pitches
    return [p if p % 12 in scale else (p - 1 if (p - 1) % 12 in scale else p + 1) for p in pitches]


def _fold_into(pitches: list[int], register: tuple[int, int]) -> list[int]:
    """Move the whole statement by octaves until its notes sit in the register (intervals kept)."""
    low, high = register
    centre = (low + high) / 2
    mean = sum(pitches) / len(pitches)
    octaves = int(round((centre - mean) / 12)) if not all(low <= p <= high for p in pitches) else 0
    moved = [p + 12 * octaves for p in pitches]
    return [min(127, max(0, p)) for p in moved]
