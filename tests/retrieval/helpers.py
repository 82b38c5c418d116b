"""Shared probes for the retrieval tests."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

from django.core.management import call_command


def image_input(html: str) -> str:
    """The search form's file input tag (exactly one on the page)."""
    (tag,) = re.findall(r'<input[^>]*name="image"[^>]*>', html)
    return tag


def eval_report(tmp_path: Path, content_sample: int) -> dict:
    """Run `eval_retrieval` on the demo catalog (combinations of two works count) and
    return its JSON report; the Markdown table lands beside it as eval.md."""
    out = tmp_path / "eval.json"
    call_command(
        "eval_retrieval",
        "--out",
        str(out),
        "--content-sample",
        str(content_sample),
        "--min-combo",
        "2",
        stdout=StringIO(),
    )
    return json.loads(out.read_text())
