"""Drawing the panel's views on the 128x64 monochrome OLED.

Pure drawing: every function takes a PIL ImageDraw (the one luma's `canvas` hands out, or any other
1-bit image's) and paints one view with fill 1 = lit pixel, 0 = dark. Nothing is drawn outside
(0, 0)-(width-1, height-1): text that would not fit is cut and ends in an ellipsis.

Home (128x64):

    CALL-RESP           112 BPM     mode, tempo
    ------------------------------
    Dm7               answering     chord (big), what the AI is doing
                        4 notes     notes it has planned ahead
    MEHL ■■■▪▪▪▪▪▪▪     TATU        style blend, or the badge (inverted)
    BLEND   MODE    ADV     DENS    the four encoders, a held one inverted
    0.30    CALL    0.80    0.50
"""

from __future__ import annotations

from functools import lru_cache

from PIL import ImageDraw, ImageFont

from sideman.panel.views import AlertView, HomeView, KnobView, MenuView
from sideman.play.modes import MODES

LIT, DARK = 1, 0
ELLIPSIS = "…"

# TrueType fonts are looked up by file name in the system font folders (DejaVu ships with Ubuntu
# and JetPack); without them Pillow's own embedded font stands in.
SANS, SANS_BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"
TEXT_SIZE = 9        # 7-pixel capitals: the smallest size that stays crisp without anti-aliasing
SMALL_SIZE = 8       # the knob row: five capitals fit a 32-pixel cell
CHORD_SIZES = (20, 18, 16, 14, 12)   # the chord name shrinks before it is cut


# --- fonts and text -------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def load_font(size: int, bold: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A legible font at `size` pixels: DejaVu Sans (Bold) when installed, else Pillow's own."""
    for name in ((SANS_BOLD,) if bold else ()) + (SANS,):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                      # Pillow < 10.1: only the fixed bitmap font
        return ImageFont.load_default()


# Metrics as drawn on a 1-bit image: FreeType hints glyphs for monochrome differently (wider, often)
# than for anti-aliased text, so measuring in the default mode would misplace right-aligned text.
MONO = {"mode": "1"}


def _bbox(font, text: str) -> tuple[int, int, int, int]:
    if isinstance(font, ImageFont.FreeTypeFont):
        return font.getbbox(text, **MONO)
    return font.getmask(text).getbbox() or (0, 0, 0, 0)   # a bitmap font's box is its whole cell


@lru_cache(maxsize=4096)
def _advance(font, char: str) -> int:
    advance = int(round(font.getlength(char, **MONO)))
    return max(advance, 3) if char.isspace() else advance   # a word gap that reads as one


def text_width(font, text: str) -> int:
    """Pixels the text takes as `draw_text` sets it, ink included (a glyph may reach past its
    advance)."""
    if not text:
        return 0
    return sum(_advance(font, c) for c in text[:-1]) + max(_advance(font, text[-1]),
                                                            _bbox(font, text[-1])[2])


@lru_cache(maxsize=None)
def _has_glyph(font, char: str) -> bool:
    """Whether the font draws `char` itself rather than its 'missing glyph' box."""
    try:
        mask = font.getmask(char, **MONO)
        missing = font.getmask("\U0010fffd", **MONO)
    except UnicodeEncodeError:             # a Latin-1 bitmap font
        return False
    return mask.size != missing.size or bytes(mask) != bytes(missing)


def glyph_or(font, char: str, fallback: str) -> str:
    return char if _has_glyph(font, char) else fallback


def fit_text(text: str, font, max_width: int) -> str:
    """`text` if it fits in `max_width` pixels, else the longest cut of it that ends in '…' and fits."""
    if text_width(font, text) <= max_width:
        return text
    ellipsis = glyph_or(font, ELLIPSIS, "..")
    for end in range(len(text) - 1, 0, -1):
        cut = text[:end].rstrip() + ellipsis
        if text_width(font, cut) <= max_width:
            return cut
    return ellipsis if text_width(font, ellipsis) <= max_width else ""


def wrap_text(lines, font, max_width: int, max_lines: int) -> list[str]:
    """Word-wrap `lines` into at most `max_lines` lines of `max_width` pixels (the last one cut)."""
    out: list[str] = []
    for line in lines:
        current = ""
        for word in line.split():
            candidate = f"{current} {word}" if current else word
            if current and text_width(font, candidate) > max_width:
                out.append(current)
                current = word
            else:
                current = candidate
        out.append(current)
    if len(out) > max_lines:           # the rest goes on the last line, cut with an ellipsis
        out = out[:max_lines - 1] + [" ".join(out[max_lines - 1:])]
    return [fit_text(line, font, max_width) for line in out]


def draw_text(draw: ImageDraw.ImageDraw, x: int, top: int, text: str, font, fill: int = LIT,
              align: str = "left") -> int:
    """Draw one line whose line box starts at `top`; `x` is its left, right or centre edge by
    `align`. Glyphs are set one by one on whole-pixel advances: at 8-9 px without anti-aliasing,
    fractional layout (and kerning) leaves uneven gaps that read as wrong letters ('turn' as 'tum').
    Returns the width drawn."""
    width = text_width(font, text)
    if align == "right":
        x -= width
    elif align == "center":
        x -= width // 2
    for char in text:      # whole-pixel advances: even spacing without anti-aliasing, on any layout
        if not char.isspace():
            draw.text((x, top), char, font=font, fill=fill)
        x += _advance(font, char)
    return width


def cap_top(font) -> int:
    """Offset from a line's top to the top of its capitals (to centre text in boxes)."""
    return _bbox(font, "H")[1]


def cap_height(font) -> int:
    box = _bbox(font, "H")
    return box[3] - box[1]


def text_in_box(draw, box, text: str, font, inverted: bool = False, align: str = "center",
                pad: int = 2) -> None:
    """Text vertically centred (by its capitals) in `box` (x0, y0, x1, y1 inclusive), the box filled
    when `inverted`; the text is cut to fit."""
    x0, y0, x1, y1 = box
    if inverted:
        draw.rectangle(box, fill=LIT)
    text = fit_text(text, font, x1 - x0 + 1 - 2 * pad)
    top = y0 + (y1 - y0 + 1 - cap_height(font)) // 2 - cap_top(font)
    x = {"left": x0 + pad, "right": x1 - pad + 1, "center": (x0 + x1 + 1) // 2}[align]
    draw_text(draw, x, top, text, font, fill=DARK if inverted else LIT, align=align)


# --- views ----------------------------------------------------------------------------------------

def draw_view(draw: ImageDraw.ImageDraw, view, width: int = 128, height: int = 64) -> None:
    """Paint any panel view (HomeView, MenuView or AlertView)."""
    if isinstance(view, HomeView):
        draw_home(draw, view, width, height)
    elif isinstance(view, MenuView):
        draw_menu(draw, view, width, height)
    elif isinstance(view, AlertView):
        draw_alert(draw, view, width, height)
    else:
        raise TypeError(f"not a panel view: {view!r}")


def draw_home(draw: ImageDraw.ImageDraw, view: HomeView, width: int = 128, height: int = 64) -> None:
    """The playing screen (see the module's sketch). A badge replaces the blend row: the blend is
    still on the BLEND knob's value, and a warning must not hide among the rest."""
    text, small = load_font(TEXT_SIZE), load_font(SMALL_SIZE)
    right = width - 1

    # Header: mode left, tempo right, a rule under them.
    tempo = "-- BPM" if view.tempo_bpm is None else f"{round(view.tempo_bpm)} BPM"
    top = 1 - cap_top(text)
    tempo_w = draw_text(draw, width, top, tempo, text, align="right")
    mode = MODES[view.mode].screen_label if view.mode in MODES else view.mode.upper()
    draw_text(draw, 0, top, fit_text(mode, text, width - tempo_w - 6), text)
    rule_y = cap_height(text) + 2
    draw.line((0, rule_y, right, rule_y), fill=LIT)

    # Knob row at the bottom (kept even when empty, so nothing jumps), blend row (or badge) above
    # it; the chord fills what is left.
    knob_top = height - 2 * (cap_height(small) + 3) - 1
    blend_box = (0, knob_top - cap_height(text) - 5, right, knob_top - 3)
    chord_area = (0, rule_y + 2, right, blend_box[1] - 2)

    _draw_chord_and_activity(draw, view, chord_area, text)
    if view.badge:
        text_in_box(draw, blend_box, view.badge.upper(), text, inverted=True)
    else:
        _draw_blend(draw, view, blend_box, small)
    if view.knobs:
        _draw_knobs(draw, view.knobs, (0, knob_top, right, height - 1), small)


def _draw_chord_and_activity(draw, view: HomeView, area, font) -> None:
    """The chord name, big, on the left (shrunk, then cut, when long); the activity word and the
    planned-note count right-aligned beside it, the count's baseline on the chord's."""
    x0, y0, x1, y1 = area
    activity = fit_text(view.activity, font, 52)
    notes = f"{view.planned_notes} note" + ("" if view.planned_notes == 1 else "s")
    column = max(text_width(font, activity), text_width(font, notes))

    chord = view.chord or glyph_or(load_font(CHORD_SIZES[0], bold=True), "—", "-")
    room = x1 - x0 + 1 - column - 6
    for size in CHORD_SIZES:
        big = load_font(size, bold=True)
        if text_width(big, chord) <= room:
            break
    chord = fit_text(chord, big, room)
    baseline = y1 - 2                                # the chord and the count stand on it
    chord_caps = max(baseline - cap_height(big), y0)
    draw_text(draw, x0, chord_caps - cap_top(big), chord, big)

    notes_caps = baseline - cap_height(font)
    draw_text(draw, x1 + 1, notes_caps - cap_top(font), notes, font, align="right")
    activity_caps = notes_caps - cap_height(font) - 3
    draw_text(draw, x1 + 1, activity_caps - cap_top(font), activity, font, align="right")


def _draw_blend(draw, view: HomeView, box, font) -> None:
    """'MEHL ▮▮▮▪▪ TATU': the blend between the two styles as ten cells, as many filled as the
    blend is toward the second style; one style alone is named in full."""
    x0, y0, x1, y1 = box
    names = [s.upper() for s in view.styles] or ["-"]
    if len(names) == 1:
        text_in_box(draw, box, f"STYLE {names[0]}", font, align="left", pad=0)
        return
    left, right = fit_text(names[0][:4], font, 26), fit_text(names[1][:4], font, 26)
    text_in_box(draw, (x0, y0, x0 + 27, y1), left, font, align="left", pad=0)
    text_in_box(draw, (x1 - 27, y0, x1, y1), right, font, align="right", pad=0)
    cells, gap = 10, 2
    bar_x0, bar_x1 = x0 + 30, x1 - 30
    cell_w = (bar_x1 - bar_x0 + 1 + gap) // cells - gap
    used = cells * (cell_w + gap) - gap
    bar_x0 += (bar_x1 - bar_x0 + 1 - used) // 2
    filled = round(min(max(view.blend, 0.0), 1.0) * cells)
    cy0, cy1 = y0 + 1, y1 - 1
    for i in range(cells):
        cx = bar_x0 + i * (cell_w + gap)
        if i < filled:
            draw.rectangle((cx, cy0, cx + cell_w - 1, cy1), fill=LIT)
        else:                                  # an empty cell: a small square in the middle
            mid = (cy0 + cy1) // 2
            draw.rectangle((cx + 1, mid - 1, cx + cell_w - 2, mid + 1), fill=LIT)


def _draw_knobs(draw, knobs: tuple[KnobView, ...], box, font) -> None:
    """One cell per encoder, label over value; a held encoder's cell is inverted."""
    x0, y0, x1, y1 = box
    count = len(knobs)
    cell_w = (x1 - x0 + 1) // count
    half = (y1 - y0 + 1) // 2
    for i, knob in enumerate(knobs):
        cx0 = x0 + i * cell_w
        cx1 = x1 if i == count - 1 else cx0 + cell_w - 1
        if knob.held:
            draw.rectangle((cx0, y0, cx1, y1), fill=LIT)
        fill = DARK if knob.held else LIT
        for row, value in ((0, knob.label.upper()), (1, knob.value)):
            value = fit_text(value, font, cx1 - cx0 - 1)
            top = y0 + row * half + (half - cap_height(font)) // 2 - cap_top(font)
            draw_text(draw, (cx0 + cx1 + 1) // 2, top, value, font, fill=fill, align="center")


def draw_menu(draw: ImageDraw.ImageDraw, view: MenuView, width: int = 128, height: int = 64) -> None:
    """Inverted title bar, a window of items scrolling around the selected one (inverted), values
    right-aligned, a scroll bar when the list is longer than the window, and the hint at the bottom."""
    font = load_font(TEXT_SIZE)
    right = width - 1
    row = cap_height(font) + 3
    text_in_box(draw, (0, 0, right, row - 1), view.title.upper(), font, inverted=True)

    list_top = row + 1
    list_bottom = height - 1
    if view.hint:
        hint_top = height - cap_height(font) - 3            # room for descenders below
        draw.line((0, hint_top - 2, right, hint_top - 2), fill=LIT)
        text_in_box(draw, (0, hint_top, right, hint_top + cap_height(font) - 1), view.hint, font,
                    pad=0)
        list_bottom = hint_top - 3
    visible = max(1, (list_bottom - list_top + 1) // row)
    count = len(view.items)
    selected = min(max(view.selected, 0), count - 1) if count else -1
    first = min(max(selected - (visible - 1) // 2, 0), max(count - visible, 0))

    scrolling = count > visible
    item_right = right - 4 if scrolling else right
    for slot, index in enumerate(range(first, min(first + visible, count))):
        y0 = list_top + slot * row
        box = (0, y0, item_right, y0 + row - 1)
        chosen = index == selected
        if chosen:
            draw.rectangle(box, fill=LIT)
        fill = DARK if chosen else LIT
        value = view.values[index] if index < len(view.values) else ""
        value_w = 0
        if value:
            value = fit_text(value, font, (item_right + 1) // 2)
            value_w = text_width(font, value)
            _text_at_row(draw, item_right - 1, box, value, font, fill, "right")
        label = fit_text(view.items[index], font, item_right - 3 - value_w - (6 if value else 0))
        _text_at_row(draw, 2, box, label, font, fill, "left")

    if scrolling:   # a thin track with a thumb showing where the window is
        track = (right - 2, list_top, right, list_top + visible * row - 1)
        draw.line((right - 1, track[1], right - 1, track[3]), fill=LIT)
        span = track[3] - track[1] + 1
        thumb0 = track[1] + span * first // count
        thumb1 = track[1] + span * (first + visible) // count - 1
        draw.rectangle((right - 2, thumb0, right, thumb1), fill=LIT)


def _text_at_row(draw, x, box, text, font, fill, align) -> None:
    top = box[1] + (box[3] - box[1] + 1 - cap_height(font)) // 2 - cap_top(font)
    draw_text(draw, x, top, text, font, fill=fill, align=align)


def draw_alert(draw: ImageDraw.ImageDraw, view: AlertView, width: int = 128, height: int = 64) -> None:
    """A bordered box (doubled for errors): the level's icon and the title, a rule, then up to three
    word-wrapped lines."""
    font, bold = load_font(TEXT_SIZE), load_font(TEXT_SIZE, bold=True)
    right, bottom = width - 1, height - 1
    draw.rectangle((0, 0, right, bottom), outline=LIT)
    if view.level == "error":
        draw.rectangle((2, 2, right - 2, bottom - 2), outline=LIT)
    inset = 4 if view.level == "error" else 2

    icon = 11
    _draw_level_icon(draw, view.level, inset + 1, inset + 1, icon)
    title_box = (inset + icon + 3, inset + 1, right - inset, inset + icon)
    text_in_box(draw, title_box, view.title.upper(), bold, align="left", pad=0)
    rule_y = inset + icon + 3
    draw.line((inset, rule_y, right - inset, rule_y), fill=LIT)

    line_h = cap_height(font) + 5
    lines = wrap_text(view.lines, font, right - 2 * inset - 3, 3)
    block = len(lines) * line_h
    top = rule_y + 2 + max(0, (bottom - inset - rule_y - 2 - block) // 2)
    for i, line in enumerate(lines):
        box = (inset + 2, top + i * line_h, right - inset, top + (i + 1) * line_h - 1)
        _text_at_row(draw, inset + 2, box, line, font, LIT, "left")


def _draw_level_icon(draw, level: str, x: int, y: int, size: int) -> None:
    """A warning triangle with '!', an error disc with '!', or an info box with 'i'."""
    mid = x + size // 2
    if level == "warning":
        draw.polygon([(mid, y), (x + size - 1, y + size - 1), (x, y + size - 1)], fill=LIT)
        draw.line((mid, y + 3, mid, y + size - 5), fill=DARK)
        draw.point((mid, y + size - 3), fill=DARK)
    elif level == "error":
        draw.ellipse((x, y, x + size - 1, y + size - 1), fill=LIT)
        draw.line((mid, y + 2, mid, y + size - 5), fill=DARK)
        draw.point((mid, y + size - 3), fill=DARK)
    else:
        draw.rectangle((x, y, x + size - 1, y + size - 1), outline=LIT)
        draw.point((mid, y + 2), fill=LIT)
        draw.line((mid, y + 4, mid, y + size - 3), fill=LIT)
