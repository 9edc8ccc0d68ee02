"""The suite's own layout: one helper module, fixtures asked for by name, no `tests` package to shadow.

A site-packages `tests` package (some libraries ship one) would shadow `import tests...`; a
conftest imported as a module is loaded a second time beside the copy pytest loaded as a plugin;
a fixture imported from another test module is defined in both. Shared helpers are in testkit.
"""

import ast
from pathlib import Path

import testkit

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> list[str]:
    """Every module a file imports, relative ones written with their leading dots."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names.append(module)
            if node.module is None:  # `from . import conftest`
                names.extend(module + alias.name for alias in node.names)
    return names


def _forbidden(module: str) -> bool:
    """`tests...`, any conftest, or another test module (its fixtures would be defined twice)."""
    parts = module.lstrip(".").split(".")
    return module == "tests" or module.startswith("tests.") or "conftest" in parts or parts[-1].startswith("test_")


def test_testkit_is_the_one_in_this_repositorys_tests_folder():
    assert Path(testkit.__file__).resolve().parent == TESTS


def test_the_tests_folder_is_no_package():
    assert not (TESTS / "__init__.py").exists()


def test_no_test_module_imports_tests_a_conftest_or_another_test_module():
    found = {str(path.relative_to(TESTS)): [m for m in _imported_modules(path) if _forbidden(m)]
             for path in sorted(TESTS.rglob("*.py"))}
    assert {path: modules for path, modules in found.items() if modules} == {}


def test_the_import_check_sees_every_way_of_importing_a_conftest(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import conftest\nfrom conftest import x\nfrom tests.conftest import y\nfrom tests import z\n"
                      "from .conftest import w\nfrom . import conftest\nimport tests.testkit\nfrom testkit import v\n"
                      "from test_migrations import u\nimport contest\n")
    assert [m for m in _imported_modules(sample) if _forbidden(m)] == [
        "conftest", "conftest", "tests.conftest", "tests", ".conftest", ".conftest", "tests.testkit", "test_migrations"]
