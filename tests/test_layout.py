"""The package's layout: every import points down the layers of docs/ARCHITECTURE.md, and the root holds only the
public entry points and the shared utilities. Reads the source (function-level imports included), imports nothing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ajepa"

# Lowest first. A module may import its own unit and the units of lower layers; never a unit beside it or above.
LAYERS: list[set[str]] = [
    {"errors"},  # shared utilities, in three steps
    {"io", "seeding", "paths", "runtime", "pretrained", "validation", "extras"},
    {"checkpoint"},
    {"features", "masking"},  # waveform -> tokens; masks
    {"models", "objectives", "data"},  # networks only; losses that take tensors; datasets
    {"inference"},  # embedder, read-out, export format
    {"training"},  # the pre-training wrapper, loop and run files
    {"cli", "hear", "train", "xares"},  # entry points: commands, HEAR, Hydra, the X-ARES encoder
    {"evals"},  # the evaluations (X-ARES's pipeline uses the X-ARES encoder)
    {"__init__"},  # `import ajepa`
    {"__main__"},  # the `ajepa` command, which reads ajepa.__version__
]
ENTRY_POINTS = {"__init__", "__main__", "train", "hear", "xares"}
UTILITIES = {"errors", "io", "seeding", "paths", "runtime", "checkpoint", "validation", "extras"}


def unit_of(module: str) -> str:
    """``ajepa.training.loop`` -> ``training``; ``ajepa`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(unit: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if unit in units)


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``ajepa`` import in the file, wherever it stands."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(parts + ([base] if base else []))
            names = [base] if node.module else [f"{base}.{a.name}" for a in node.names]
            if base == "ajepa":  # `from ajepa import x`: x is a subpackage, a module, or a name of ajepa itself
                names = [f"ajepa.{a.name}" if (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").is_file()
                         else "ajepa" for a in node.names]
            found += [(node.lineno, n) for n in names if n.split(".")[0] == "ajepa"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "ajepa"]
    return found


def test_every_unit_is_placed_in_a_layer() -> None:
    units = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                      if (p / "__init__.py").is_file()}
    placed = set().union(*LAYERS)
    assert units <= placed, f"units missing from LAYERS (and docs/ARCHITECTURE.md): {sorted(units - placed)}"


def test_imports_only_point_down_the_layers() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = unit_of(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
        for line, target in imports(path):
            dst = unit_of(target)
            if dst != src and layer_of(dst) >= layer_of(src):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({src}) imports {target} ({dst})")
    assert not wrong, "imports against the layers of docs/ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_the_package_never_imports_the_checkout_aliases() -> None:
    """``evals/`` beside the package holds only ``python -m evals.*`` short names; the wheel has no such package."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n == "evals" or n.startswith("evals.") for n in names), path


def test_the_root_holds_entry_points_and_shared_utilities_only() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules <= ENTRY_POINTS | UTILITIES, sorted(modules - ENTRY_POINTS - UTILITIES)


def test_models_and_objectives_know_nothing_of_each_other() -> None:
    for a, b in (("models", "objectives"), ("objectives", "models")):
        for path in (PACKAGE / a).rglob("*.py"):
            assert not [t for _, t in imports(path) if unit_of(t) == b], f"{path} imports ajepa.{b}"


def test_the_layer_check_catches_an_upward_import(tmp_path) -> None:
    bad = tmp_path / "ajepa" / "models" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from ajepa.training.loop import train\n    return train\n")
    (found,) = [t for _, t in imports_under(bad, tmp_path)]
    assert found == "ajepa.training.loop" and layer_of(unit_of(found)) > layer_of("models")


def imports_under(path: Path, root: Path) -> list[tuple[int, str]]:
    """:func:`imports` for a file under another root (the self-test)."""
    global ROOT
    saved, ROOT = ROOT, root
    try:
        return imports(path)
    finally:
        ROOT = saved
