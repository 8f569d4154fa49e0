"""The alert rules pass `promtool check rules` and their unit tests (`promtool test rules`)."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.harness import ROOT
from tests.e2e.prometheus import binary

pytestmark = pytest.mark.e2e

RULES_DIR = ROOT / "collector" / "rules"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules_accepts_the_rules_file() -> None:
    """The rules file is valid for Prometheus: syntax, PromQL, templates."""
    result = _promtool("check", "rules", "otel-logkit.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """Each alert fires on its synthetic series, with its labels and rendered annotations, and only then."""
    result = _promtool("test", "rules", "otel-logkit.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
