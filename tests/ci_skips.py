"""Skips in CI (CI=true) fail, unless they name missing hardware: CI has every data set, package and binary.

Registered by tests/conftest.py; tests/test_suite_rules.py runs it on a small suite.
"""

from __future__ import annotations

import os

import pytest

# The one list of skips CI accepts: a test that needs hardware the machine lacks names one of these in its reason.
HARDWARE_SKIPS = ("GPU", "AVX512", "AMX", "VNNI")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report.longrepr)
        if not any(name in reason for name in HARDWARE_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where every data set and component is present: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())  # a module-level importorskip
