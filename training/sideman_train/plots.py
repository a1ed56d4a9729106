"""Pictures for `sideman-train` reports, drawn with Pillow only (no matplotlib on the training box).

loss_curve_png: training and validation loss (bits per event) against step, from the loss CSV that
training writes (columns step,train_bits,val_bits,lr,elapsed_s; val_bits empty on rows without a
validation)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from sideman.paths import write_atomically

WIDTH, HEIGHT = 800, 480
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 78, 24, 40, 56
BACKGROUND, AXIS, GRID, TEXT = (255, 255, 255), (40, 40, 40), (228, 228, 228), (30, 30, 30)
TRAIN_COLOUR = (52, 101, 164)
VAL_COLOUR = (230, 120, 30)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # FreeType font with Pillow >= 10.1
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_loss_csv(csv_path: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(train points, val points) as (step, bits) pairs; rows without a number are skipped."""
    train, val = [], []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            step = _number(row.get("step"))
            if step is None:
                continue
            t, v = _number(row.get("train_bits")), _number(row.get("val_bits"))
            if t is not None:
                train.append((step, t))
            if v is not None:
                val.append((step, v))
    return train, val


def nice_ticks(low: float, high: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(1, target)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, k = [], 0
    while first + k * step <= high + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def _label(value: float, span: float, thousands: bool = False) -> str:
    if thousands and value != 0:
        return f"{value / 1000:g}k"
    if span >= 10 or float(value).is_integer() and span >= 2:
        return f"{value:.0f}"
    decimals = max(0, min(6, 1 - math.floor(math.log10(span)))) if span > 0 else 2
    return f"{value:.{decimals}f}"


def _range(values: list[float], pad_share: float) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-12:
        pad = max(abs(low) * 0.05, 0.5)
        return low - pad, high + pad
    pad = (high - low) * pad_share
    return low - pad, high + pad


def draw_loss_curve(train: list[tuple[float, float]], val: list[tuple[float, float]],
                    title: str = "") -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(12)
    x0, y0, x1, y1 = MARGIN_LEFT, MARGIN_TOP, WIDTH - MARGIN_RIGHT, HEIGHT - MARGIN_BOTTOM
    if title:
        draw.text(((x0 + x1) / 2, 12), title, fill=TEXT, font=font, anchor="mt")

    points = train + val
    if not points:
        draw.rectangle([x0, y0, x1, y1], outline=AXIS)
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), "no loss rows yet", fill=TEXT, font=font, anchor="mm")
        return image

    steps = [s for s, _ in points]
    if max(steps) > min(steps):
        step_low, step_high = min(steps), max(steps)
    else:
        step_low, step_high = _range(steps, 0.0)
    bits_low, bits_high = _range([b for _, b in points], 0.06)

    def px(step: float) -> float:
        return x0 + (step - step_low) / (step_high - step_low) * (x1 - x0)

    def py(bits: float) -> float:
        return y1 - (bits - bits_low) / (bits_high - bits_low) * (y1 - y0)

    step_ticks = nice_ticks(step_low, step_high)
    thousands = max(abs(t) for t in step_ticks) >= 10_000 and step_high - step_low >= 1000
    for tick in step_ticks:
        x = px(tick)
        draw.line([(x, y0), (x, y1)], fill=GRID)
        draw.line([(x, y1), (x, y1 + 5)], fill=AXIS)
        draw.text((x, y1 + 8), _label(tick, step_high - step_low, thousands), fill=TEXT, font=small, anchor="mt")
    for tick in nice_ticks(bits_low, bits_high):
        y = py(tick)
        draw.line([(x0, y), (x1, y)], fill=GRID)
        draw.line([(x0 - 5, y), (x0, y)], fill=AXIS)
        draw.text((x0 - 8, y), _label(tick, bits_high - bits_low), fill=TEXT, font=small, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline=AXIS)
    draw.text(((x0 + x1) / 2, HEIGHT - 8), "step", fill=TEXT, font=font, anchor="md")
    y_title = "bits / event"
    box = draw.textbbox((0, 0), y_title, font=font)
    label = Image.new("RGBA", (box[2] - box[0] + 4, box[3] - box[1] + 6), BACKGROUND + (0,))
    ImageDraw.Draw(label).text((2 - box[0], 3 - box[1]), y_title, fill=TEXT, font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (6, int((y0 + y1) / 2 - label.height / 2)), label)

    for colour, series, width in ((TRAIN_COLOUR, train, 2), (VAL_COLOUR, val, 2)):
        xy = [(px(s), py(b)) for s, b in sorted(series)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=width, joint="curve")
        if colour == VAL_COLOUR or len(xy) == 1:
            for x, y in xy:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)

    entries = [(name, colour) for name, colour, series in
               (("train", TRAIN_COLOUR, train), ("validation", VAL_COLOUR, val)) if series]
    if entries:
        row_h = 18
        text_w = max(draw.textlength(name, font=small) for name, _ in entries)
        lx1, ly0 = x1 - 10, y0 + 10
        lx0 = lx1 - text_w - 46
        draw.rectangle([lx0, ly0, lx1, ly0 + row_h * len(entries) + 8], fill=BACKGROUND, outline=(180, 180, 180))
        for i, (name, colour) in enumerate(entries):
            y = ly0 + 4 + row_h * i + row_h / 2
            draw.line([(lx0 + 8, y), (lx0 + 32, y)], fill=colour, width=2)
            draw.text((lx0 + 38, y), name, fill=TEXT, font=small, anchor="lm")
    return image


def loss_curve_png(csv_path: Path, png_path: Path, title: str = "") -> None:
    """Train and validation bits/event against step, from the training loss CSV, as an 800x480 PNG
    written atomically. A CSV with one row, no validation rows or no rows at all still gives a picture."""
    train, val = read_loss_csv(Path(csv_path))
    buffer = io.BytesIO()
    draw_loss_curve(train, val, title).save(buffer, format="PNG")
    write_atomically(Path(png_path), buffer.getvalue())
