"""Small helpers on raw MIDI messages (tuples of ints)."""

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0
CC_SUSTAIN = 64
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123

CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC




def is_note_on(message) -> bool:
    return len(message) == 3 and message[0] & 0xF0 == NOTE_ON and message[2] > 0


def is_note_off(message) -> bool:
    status = message[0] & 0xF0
    return len(message) == 3 and (status == NOTE_OFF or (status == NOTE_ON and message[2] == 0))



def note_on(ch: int, pitch: int, velocity: int) -> tuple[int, int, int]:
    return (NOTE_ON | ch, pitch, velocity)


def note_off(ch: int, pitch: int) -> tuple[int, int, int]:
    return (NOTE_OFF | ch, pitch, 0)


def control_change(ch: int, control: int, value: int) -> tuple[int, int, int]:
    return (CONTROL_CHANGE | ch, control, value)


def with_channel(message, ch: int) -> tuple[int, ...]:
    """The same channel message on another channel."""
    return (message[0] & 0xF0 | ch, *message[1:])
