"""retrieval/ml stays a plain-Python package: no Django, and no heavy imports at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import retrieval.ml

PACKAGE = Path(retrieval.ml.__file__).parent
FORBIDDEN = ("django", "rest_framework", "celery")


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_ml_package_never_imports_django_drf_or_celery():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 6
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in files
        for name in _imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    }
    assert not offenders


def test_light_modules_import_without_torch_or_faiss():
    code = (
        "import sys\n"
        "import retrieval.ml, retrieval.ml.errors, retrieval.ml.fusion\n"
        "import retrieval.ml.evaluation, retrieval.ml.embedders\n"
        "heavy = [m for m in ('torch', 'faiss', 'transformers', 'sentence_transformers',"
        " 'django') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = PACKAGE.parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
