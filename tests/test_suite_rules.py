"""The suite's own rules: every module is `unit` or `e2e`, `unit` modules start no process and no server, and in
CI (CI=true) a skip fails unless it names missing hardware (tests/ci_skips.py, run here on a small real suite)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
TESTS = Path(__file__).resolve().parent
# what starts a process or a server: the modules and the names a `unit` module may not use
STARTS_PROCESSES = {"subprocess", "multiprocessing", "uvicorn", "live_server", "bench.server_process", "ray",
                    "websockets", "httpx", "socket"}
STARTS_PROCESS_NAMES = {"Popen", "LiveServer", "ServerProcess", "system", "spawn", "fork", "execv"}


def _test_modules() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text()) for p in sorted(TESTS.glob("test_*.py"))}


def _marks(tree: ast.Module) -> set[str]:
    """The `pytest.mark.X` names in the module's `pytestmark`."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in node.targets):
            return {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"}
    return set()


def _imported(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_every_module_is_unit_or_e2e() -> None:
    for name, tree in _test_modules().items():
        marks = _marks(tree) & {"unit", "e2e"}
        assert len(marks) == 1, f"{name}: pytestmark must carry exactly one of unit/e2e, has {sorted(marks)}"


def test_unit_modules_start_no_process_and_no_server() -> None:
    offenders = {}
    for name, tree in _test_modules().items():
        if "unit" not in _marks(tree):
            continue
        starts = {m for m in _imported(tree) if any(m == s or m.startswith(s + ".") for s in STARTS_PROCESSES)}
        starts |= {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(tree)
                   if isinstance(n, (ast.Attribute, ast.Name))} & STARTS_PROCESS_NAMES
        if starts:
            offenders[name] = sorted(starts)
    assert not offenders, f"marked unit, but start a process or a server (mark them e2e): {offenders}"


SMALL_SUITE = '''
import pytest

def test_data():
    pytest.skip("shared data not found at /nowhere")

@pytest.mark.skipif(True, reason="needs a CUDA GPU")
def test_gpu():
    pass

@pytest.mark.skipif(True, reason="this CPU has no AVX512-BF16")
def test_cpu_unit():
    pass

def test_passes():
    pass
'''


@pytest.mark.parametrize("ci", ["true", ""])
def test_ci_fails_skips_that_name_no_hardware(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                              ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_small=SMALL_SUITE, test_gone="import pytest\npytest.importorskip('no_such_module_x')\n")
    result = pytester.runpytest_inprocess("-p", "ci_skips", "-rs", "--continue-on-collection-errors")
    if ci:
        result.assert_outcomes(passed=1, skipped=2, failed=1, errors=1)
        result.stdout.fnmatch_lines(["*skipped in CI*shared data not found*"])
    else:
        result.assert_outcomes(passed=1, skipped=4)
        result.stdout.fnmatch_lines(["SKIPPED*shared data not found*"])  # -rs: the reasons are printed


def test_cli_runs_with_the_interpreter_running_the_tests() -> None:
    """No test builds a path to a venv's interpreter (`REPO / ".venv" / "bin" / "python"`): sys.executable."""
    for name, tree in _test_modules().items():
        venv = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)
                and any(isinstance(x, ast.Constant) and str(x.value).startswith(".venv") for x in (n.left, n.right))]
        assert not venv, f"{name}:{venv} hard-codes a venv: use sys.executable"
