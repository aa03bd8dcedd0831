"""The layout docs/architecture.md describes: stages import only the stages above them, no cycles,
the analysis needs neither Ray nor torch, no module of study/ or benchmarks/ grows far past 400 lines, and the tests the
docs name exist."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["config", "common", "cli", "progress", "data", "model", "metrics", "training", "tuning", "outputs", "analysis"]


def _imports() -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / "study").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("study"):
                deps |= {f"{node.module}.{a.name}" for a in node.names} if node.module.count(".") < 2 else {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("study")}
        found[name] = deps
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_stages_import_only_the_stages_above_them():
    upward = [(m, d) for m, deps in _imports().items() for d in deps
              if _stage(m) and (_stage(d) is None or STAGES.index(_stage(d)) > STAGES.index(_stage(m)))]
    assert not upward, f"imports against the pipeline's order: {upward}"


def test_no_import_cycles():
    graph = _imports()
    modules = set(graph)
    resolved = {m: {d if d in modules else d.rpartition(".")[0] for d in deps} & modules for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in resolved[m]:
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path + [d])}"
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(resolved):
        if m not in state:
            visit(m, [m])


def test_the_analysis_imports_neither_ray_nor_torch():
    code = "import sys, study.analyze; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_far_over_400_lines():
    """study/ and benchmarks/ alike: a module past ~400 lines holds more than one idea."""
    modules = [*(ROOT / "study").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    assert any(p.parent.name == "benchmarks" for p in modules)
    long = {str(p.relative_to(ROOT)): n for p in modules if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420}
    assert not long, long


def test_the_docs_name_only_tests_that_exist():
    """README and docs/ point readers at tests by `tests/<file>.py[::<name>]`: each file and test they name is
    there (a renamed test would otherwise leave a claim pointing at nothing)."""
    named = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named += [(doc.name, *m) for m in re.findall(r"tests/(\w+\.py)(?:::(\w+))?", doc.read_text(encoding="utf-8"))]
    assert named
    missing = []
    for doc, file, test in named:
        path = ROOT / "tests" / file
        if not path.exists():
            missing.append((doc, file))
        elif test and not re.search(rf"^def {test}\(", path.read_text(encoding="utf-8"), re.M):
            missing.append((doc, f"{file}::{test}"))
    assert not missing, missing
