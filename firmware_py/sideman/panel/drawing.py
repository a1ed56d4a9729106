"""An illustration of the box's front panel with the OLED showing a real rendered view: for the README
and for checking a layout by eye. Pillow only.

    draw_front_panel(view, "front-panel.png")
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from sideman.panel.screens import draw_view, load_font, text_width

SIZE = (1000, 400)
OLED_SIZE = (128, 64)
OLED_SCALE = 3

# (label, push function) left to right, as printed on the panel
ENCODERS = (("BLEND", "STYLE B"), ("MODE", "TRADE BARS"), ("ADVENTURE", "CHORD BIAS"),
            ("DENSITY", "ANSWER LEN"))
BUTTONS = (("PANIC", "hold: MUTE", (200, 50, 45)), ("KEEP", "hold: SAVE PRESET", (60, 150, 90)))
JACKS = (("MIDI IN", "din", "5-pin DIN"), ("MIDI OUT", "din", "5-pin DIN"), ("USB-C MIDI", "usb", ""),
         ("POWER", "barrel", ""))

PAPER = (236, 236, 232)
PANEL = (43, 45, 50)
PANEL_EDGE = (20, 21, 24)
INK = (232, 232, 228)       # printed legends
DIM = (150, 153, 160)       # secondary legends
PIXEL_ON = (170, 215, 255)  # the OLED's lit pixels, a little blue
PIXEL_OFF = (6, 9, 14)


def oled_picture(view, scale: int = OLED_SCALE) -> Image.Image:
    """The view as the OLED shows it, scaled up (nearest), lit pixels blue-white."""
    screen = Image.new("1", OLED_SIZE)
    draw_view(ImageDraw.Draw(screen), view, *OLED_SIZE)
    big = screen.resize((OLED_SIZE[0] * scale, OLED_SIZE[1] * scale), Image.NEAREST)
    colour = Image.new("RGB", big.size, PIXEL_OFF)
    colour.paste(PIXEL_ON, mask=big)
    return colour


def draw_front_panel(view, path=None) -> Image.Image:
    """The front panel (OLED with `view`, four encoders, two buttons) and the side jacks, as an RGB
    image of SIZE; saved as PNG when `path` is given."""
    image = Image.new("RGB", SIZE, PAPER)
    draw = ImageDraw.Draw(image)
    title, legend, small = load_font(18, bold=True), load_font(14, bold=True), load_font(12)

    # The front: a dark plate.
    draw.rounded_rectangle((16, 30, 858, 380), radius=18, fill=PANEL, outline=PANEL_EDGE, width=3)
    draw.text((44, 46), "SIDEMAN", font=title, fill=INK)
    draw.text((44 + text_width(title, "SIDEMAN") + 12, 52), "jazz piano stage box", font=small,
              fill=DIM)

    # The OLED in its bezel.
    screen = oled_picture(view)
    sx, sy = 52, 100
    draw.rounded_rectangle((sx - 14, sy - 14, sx + screen.width + 14, sy + screen.height + 14),
                           radius=8, fill=(12, 12, 14), outline=(80, 82, 88), width=2)
    image.paste(screen, (sx, sy))
    _centred(draw, sx + screen.width // 2, sy + screen.height + 26,
             "OLED 128x64  SSD1306  I2C bus 7 @ 0x3C", small, DIM)

    # Four push encoders: legend above, push function below.
    for i, (label, push) in enumerate(ENCODERS):
        cx, cy = 512 + i * 98, 175
        _centred(draw, cx, cy - 66, label, legend, INK)
        _encoder(draw, cx, cy, 28, angle=-120 + 75 * i)
        _centred(draw, cx, cy + 44, "push", small, DIM)
        _centred(draw, cx, cy + 60, push, small, INK)

    # Two buttons.
    for i, (label, hold, colour) in enumerate(BUTTONS):
        cx, cy = 530 + i * 150, 300
        _button(draw, cx, cy, 20, colour)
        draw.text((cx + 32, cy - 20), label, font=legend, fill=INK)
        draw.text((cx + 32, cy + 2), hold, font=small, fill=DIM)

    # The right-hand side: the jacks, top to bottom.
    draw.text((884, 8), "SIDE", font=small, fill=(90, 92, 98))
    draw.rounded_rectangle((876, 30, 984, 380), radius=12, fill=PANEL, outline=PANEL_EDGE, width=3)
    for i, (label, kind, note) in enumerate(JACKS):
        cx, cy = 930, 70 + i * 88
        {"din": _din, "usb": _usb_c, "barrel": _barrel}[kind](draw, cx, cy)
        _centred(draw, cx, cy + 30, label, small, INK)
        _centred(draw, cx, cy + 46, note, load_font(11), DIM)

    if path is not None:
        image.save(path)
    return image


def _centred(draw, cx: int, top: int, text: str, font, fill) -> None:
    draw.text((cx - text_width(font, text) // 2, top), text, font=font, fill=fill)


def _encoder(draw, cx: int, cy: int, r: int, angle: float) -> None:
    """A knurled knob seen from the front, its pointer at `angle` degrees from 12 o'clock."""
    draw.ellipse((cx - r - 6, cy - r - 6, cx + r + 6, cy + r + 6), fill=(30, 31, 35))  # nut
    for k in range(11):   # scale dots from -150 to +150 degrees
        a = math.radians(-150 + 30 * k)
        x, y = cx + (r + 11) * math.sin(a), cy - (r + 11) * math.cos(a)
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=DIM)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(62, 64, 70), outline=(18, 18, 20), width=2)
    for k in range(24):   # knurling
        a = math.radians(k * 15)
        draw.line((cx + (r - 5) * math.sin(a), cy - (r - 5) * math.cos(a),
                   cx + (r - 1) * math.sin(a), cy - (r - 1) * math.cos(a)), fill=(40, 41, 46), width=2)
    draw.ellipse((cx - r + 8, cy - r + 8, cx + r - 8, cy + r - 8), fill=(74, 76, 83))
    a = math.radians(angle)
    draw.line((cx + 6 * math.sin(a), cy - 6 * math.cos(a),
               cx + (r - 4) * math.sin(a), cy - (r - 4) * math.cos(a)), fill=INK, width=3)


def _button(draw, cx: int, cy: int, r: int, colour) -> None:
    draw.ellipse((cx - r - 5, cy - r - 5, cx + r + 5, cy + r + 5), fill=(26, 27, 30))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(15, 15, 15), width=2)
    lighter = tuple(min(255, c + 45) for c in colour)
    draw.ellipse((cx - r + 6, cy - r + 5, cx + r - 10, cy - 2), fill=lighter)


def _din(draw, cx: int, cy: int) -> None:
    """A 5-pin DIN socket: the shell, pins on a 180-degree arc and the key notch."""
    draw.ellipse((cx - 24, cy - 24, cx + 24, cy + 24), fill=(170, 172, 176), outline=(20, 20, 20))
    draw.ellipse((cx - 19, cy - 19, cx + 19, cy + 19), fill=(22, 22, 24))
    for deg in (-90, -45, 0, 45, 90):
        a = math.radians(deg)
        x, y = cx + 11 * math.sin(a), cy - 11 * math.cos(a) + 3
        draw.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=(200, 200, 204))
    draw.rectangle((cx - 3, cy + 14, cx + 3, cy + 20), fill=(170, 172, 176))


def _usb_c(draw, cx: int, cy: int) -> None:
    draw.rounded_rectangle((cx - 20, cy - 8, cx + 20, cy + 8), radius=8, fill=(170, 172, 176),
                           outline=(20, 20, 20))
    draw.rounded_rectangle((cx - 16, cy - 5, cx + 16, cy + 5), radius=5, fill=(22, 22, 24))
    draw.rectangle((cx - 10, cy - 1, cx + 10, cy + 1), fill=(200, 200, 204))


def _barrel(draw, cx: int, cy: int) -> None:
    draw.ellipse((cx - 18, cy - 18, cx + 18, cy + 18), fill=(170, 172, 176), outline=(20, 20, 20))
    draw.ellipse((cx - 12, cy - 12, cx + 12, cy + 12), fill=(22, 22, 24))
    draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=(200, 200, 204))
