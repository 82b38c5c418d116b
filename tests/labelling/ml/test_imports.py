"""labelling/ml stays free of Django and cheap to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ML = ROOT / "labelling" / "ml"
FORBIDDEN = {"django", "rest_framework", "celery"}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_ml_never_imports_django_drf_or_celery():
    files = sorted(ML.rglob("*.py"))
    assert len(files) >= 6
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    }
    assert not offenders


def test_importing_the_package_does_not_import_torch_or_transformers():
    code = (
        "import sys\n"
        "import labelling.ml.captioner, labelling.ml.vqa, labelling.ml.evaluation\n"
        "import labelling.ml.tiny, labelling.ml.loading, labelling.ml.errors\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
