"""The product's shape: data flows one way (ui -> composer -> models, storage), files stay small.

Read from the source with `ast`, so the check costs nothing and names the offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ui", "composer", "models", "storage")
# What each package may import from the others. models and storage are peers that never meet;
# the two shared vocabularies below are the only names the lower layers take from composer.
MAY_IMPORT = {
    "ui": {"composer"},
    "composer": {"models", "storage"},
    "models": set(),
    "storage": set(),
}
SHARED = ("composer.types", "composer.config")
MAX_LINES = 500


def _product_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for package in PACKAGES:
        files += sorted(path for path in (ROOT / package).rglob("*.py")
                        if "migrations" not in path.parts)
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in a file, `from a import b` as a and a.b."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _allowed(source: str, module: str) -> bool:
    target = module.split(".")[0]
    if target not in PACKAGES or target == source:
        return True
    if module in SHARED or module.startswith(tuple(name + "." for name in SHARED)):
        return True
    return target in MAY_IMPORT[source]


def test_every_import_points_down() -> None:
    wrong = []
    for path in _product_files():
        source = path.relative_to(ROOT).parts[0]
        if source not in PACKAGES:
            continue  # app.py wires the layers together
        wrong += [f"{path.relative_to(ROOT)}:{line} imports {module}"
                  for line, module in _imports(path) if not _allowed(source, module)]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_product_file_is_over_500_lines() -> None:
    long = [f"{path.relative_to(ROOT)}: {count} lines" for path in _product_files()
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"files over {MAX_LINES} lines:\n" + "\n".join(long)


def test_the_layer_check_sees_a_wrong_import() -> None:
    assert not _allowed("models", "storage.db")
    assert not _allowed("storage", "models.embed")
    assert not _allowed("ui", "models.registry")
    assert not _allowed("models", "composer.pipeline")
    assert _allowed("models", "composer.types")
    assert _allowed("ui", "composer.services")
    assert _allowed("composer", "storage.documents")
