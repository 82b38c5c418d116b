"""`generation/ml` stays outside Django and cheap to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ML_DIR = Path(__file__).resolve().parents[3] / "generation" / "ml"
FORBIDDEN = ("django", "rest_framework", "celery")


def test_ml_package_never_imports_django_drf_or_celery():
    files = sorted(ML_DIR.glob("*.py"))
    assert len(files) >= 7
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_the_modules_loads_neither_torch_nor_django():
    """The web process may import these modules (configs, errors) without paying for torch."""
    code = (
        "import sys\n"
        "import generation.ml.errors, generation.ml.lora_train, generation.ml.render\n"
        "import generation.ml.provenance, generation.ml.tiny\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'django')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    root = ML_DIR.parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
