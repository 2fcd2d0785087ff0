"""The text-presence check that gates OCR of query images, on real photos and on drawn text."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from visearch.offline.datasets import photo_catalogue
from visearch.offline.evaluation.suites import FONT_FILE, banner
from visearch.shared.images import decode_image
from visearch.shared.text_presence import likely_text, text_lines

QUERY_MIN_LINES = 1  # services/ranking/understanding.TEXT_MIN_LINES: a single word counts


def _draft(photo) -> Image.Image:
    """The photo as the search API's pixel step sees it: a draft decode of ~256 px or more."""
    return decode_image(photo.read_bytes(), min_side=256)


def test_most_real_photos_show_no_lines_of_text():
    """Of the 19 real photos, at most four pass the gate (measured: astronaut, chelsea, hubble, kite): OCR runs
    on few queries that have no text (it then finds nothing, at its own cost)."""
    passed = [p.image_id for p in photo_catalogue() if likely_text(_draft(p), QUERY_MIN_LINES)]
    assert len(passed) <= 4, passed


def test_a_card_with_lines_of_text_passes():
    card = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(card)
    font = ImageFont.truetype(str(FONT_FILE), 28) if FONT_FILE.is_file() else ImageFont.load_default(28)
    for n, line in enumerate(("SUMMER SALE -50%", "Free delivery", "Order today", "EUR 19.99")):
        draw.text((20, 20 + 60 * n), line, font=font, fill="black")
    assert text_lines(card) >= QUERY_MIN_LINES


@pytest.mark.parametrize("name", ["photo-coffee", "photo-dog", "photo-rocket"])
def test_a_text_banner_over_a_photo_is_seen(name):
    (photo,) = [p for p in photo_catalogue() if p.image_id == name]
    plain, with_banner = text_lines(_draft(photo)), text_lines(banner(_draft(photo)))
    assert with_banner > plain


def test_tiny_and_flat_images_have_no_text():
    assert text_lines(Image.new("RGB", (8, 8), "white")) == 0
    assert text_lines(Image.new("L", (300, 200), 128)) == 0


def test_one_large_word_is_a_line_of_text():
    """A single headline word filling a third of a short image (a label, a sign) passes the gate."""
    card = Image.new("RGB", (640, 200), "white")
    ImageDraw.Draw(card).text((30, 40), "ZANZIBAR", font=ImageFont.load_default(96), fill="black")
    assert likely_text(card, QUERY_MIN_LINES)
