"""Docs match the code: every setting is documented in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

from visearch.shared.config import settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_doc_lists_every_setting():
    """docs/configuration.md contains the generated settings table verbatim (run the command it names)."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_markdown() in doc, "regenerate with: python -m visearch.shared.config"
