"""Every module of ``inspect_app`` imports on its own, whatever was imported before it; the line
station, the REST API and the results store import without torch.

Importing each module in a new interpreter would cost a torch import each (~2 s, ~100 modules), so
a parent process imports the third-party packages the modules import at their top (never an
``inspect_app`` module) and forks one child per module: each child starts with no ``inspect_app``
module loaded, as a fresh interpreter would.

Run as a script (``python tests/test_imports.py``) it prints one line per module that fails.
"""

from __future__ import annotations

import ast
import importlib
import multiprocessing
import os
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inspect_app"
# Scripts, not modules: they run when loaded (Streamlit pages and app, ``python -m``, Alembic's env).
SCRIPTS = {"inspect_app.__main__", "inspect_app.ui.app", "inspect_app.store.migrations.env"}
SCRIPT_PACKAGES = ("inspect_app.ui.pages.",)
TORCH_FREE = ("inspect_app.line", "inspect_app.api", "inspect_app.store")


def package_modules() -> list[str]:
    """Dotted names of the package's modules, found on disk (importing would defeat the test)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name not in SCRIPTS and not name.startswith(SCRIPT_PACKAGES):
            names.append(name)
    return names


def third_party_imports() -> set[str]:
    """What the modules import at their top level, other than ``inspect_app`` itself."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return {name for name in names if name.split(".")[0] != "inspect_app"}


def _import_alone(name: str) -> tuple[str, str | None]:
    """In a forked child: import ``name``; the traceback when it fails."""
    try:
        importlib.import_module(name)
    except BaseException:  # noqa: B036 - a module may raise anything, SystemExit included
        return name, traceback.format_exc()
    return name, None


def import_each_module(workers: int = 2) -> dict[str, str]:
    """{module: traceback} for the modules that fail to import alone."""
    for name in sorted(third_party_imports()):
        try:
            importlib.import_module(name)
        except Exception:  # a child that needs it reports the failure, with its module
            continue
    assert not [m for m in sys.modules if m.split(".")[0] == "inspect_app"], "the parent imported inspect_app"
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, maxtasksperchild=1) as pool:
        outcomes = pool.map(_import_alone, package_modules(), chunksize=1)
    return {name: error for name, error in outcomes if error is not None}


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_every_module_imports_alone():
    run = _python(f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_imports; "
                  "failed = test_imports.import_each_module(); "
                  "print(''.join(f'--- {name}\\n{error}' for name, error in sorted(failed.items()))); "
                  "print(f'{len(test_imports.package_modules())} modules, {len(failed)} failed')")
    assert run.returncode == 0, run.stderr
    assert run.stdout.rstrip().endswith(" 0 failed"), run.stdout


def test_the_test_sees_every_module():
    modules = package_modules()
    assert "inspect_app.cli" in modules and "inspect_app.explain.commands" in modules
    assert "inspect_app.ui.pages.history" not in modules and "inspect_app.__main__" not in modules
    assert len(modules) > 80


# Prints the package's frames that led to the first torch import, if any.
WHO_IMPORTS_TORCH = """
import sys, traceback
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "torch" not in sys.modules:
            frames = [f for f in traceback.extract_stack() if "/inspect_app/" in f.filename]
            print(" -> ".join(f"{f.filename.split('/inspect_app/')[-1]}:{f.lineno}" for f in frames))
sys.meta_path.insert(0, Spy())
import MODULE
"""


def test_line_api_and_store_import_without_torch():
    for module in TORCH_FREE:
        run = _python(WHO_IMPORTS_TORCH.replace("MODULE", module))
        assert run.returncode == 0, run.stderr
        assert not run.stdout.strip(), f"importing {module} imports torch: {run.stdout.strip()}"


if __name__ == "__main__":
    failures = import_each_module()
    for module, error in sorted(failures.items()):
        print(f"--- {module}\n{error}")
    sys.exit(1 if failures else 0)
