"""What a voice hands the session for one request: a stream of notes the session can look at
before committing them. peek() is the next note, or None when there is none (yet); finished() is
True once no note will come any more; pop() commits the next note (the session is about to
schedule it). Until pop(), a voice may still change its mind (the transformer rolls back its
lookahead when the player plays). "None yet" is not "over": a transformer plan whose next note
is still to be sampled says None but is not finished (the session dropped such plans as over,
and comping and duet with the transformer fell silent after a minute)."""

from __future__ import annotations

from typing import Iterator, Protocol

from sideman.model.events import Note


class NoteStream(Protocol):
    def peek(self) -> Note | None: ...
    def finished(self) -> bool: ...
    def pop(self) -> Note: ...


class PeekableNotes:
    """A note generator as a NoteStream (the Markov voice's answers are generators)."""

    def __init__(self, notes: Iterator[Note]):
        self._notes = notes
        self._next: Note | None = None
        self._done = False

    def peek(self) -> Note | None:
        if self._next is None and not self._done:
            self._next = next(self._notes, None)
            self._done = self._next is None
        return self._next

    def finished(self) -> bool:
        return self.peek() is None   # a generator that has nothing now never will

    def pop(self) -> Note:
        note = self.peek()
        self._next = None
        return note
