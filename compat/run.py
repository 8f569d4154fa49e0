"""make compat: Flask's and FastAPI's own test suites give the same per-test results under otel-logkit.

Downloads the frameworks' sdists from PyPI (they ship their tests), installs their test
dependencies into ``.cache/compat-venv`` (otel-logkit editable, from this checkout), then runs
each suite

- bare (no instrumentation),
- under ``otel-logkit-instrument`` (the check), and
- under the official ``opentelemetry-instrument`` with ``opentelemetry-distro`` and the contrib
  instrumentations (information only),

each once with the suite's own warning filters (``strict``: warnings are errors) and once with
them cleared (``lenient``). Telemetry exporters are ``none``. The outcome of every test under
``otel-logkit-instrument`` must equal its bare outcome, else the exit code is 1.

FastAPI's suite is its ``tests/test_tutorial`` directory (every documented example; the whole
``tests/`` takes about two minutes a run on two cores, six runs would not fit five minutes).

Environment: ``COMPAT_FLASK`` / ``COMPAT_FASTAPI`` (versions, default the supported releases
below; PyPI had no newer pre-release to try as the development heads in December 2026;
``COMPAT_FASTAPI=0.141.1``, the last release without ``fastapi.telemetry``, checks the
contrib-instrumentation path),
``COMPAT_JOBS`` (suites run at once, default 2), ``COMPAT_OFFICIAL=0`` (skip the
information-only runs).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "compat"
VENV = ROOT / ".cache" / "compat-venv"
REQUIREMENTS = ROOT / "compat" / "requirements.txt"
RUN_TIMEOUT = 600  # seconds, per pytest run

FLASK = os.environ.get("COMPAT_FLASK", "3.1.3")
FASTAPI = os.environ.get("COMPAT_FASTAPI", "0.165.0")
JOBS = max(1, int(os.environ.get("COMPAT_JOBS", "2")))
OFFICIAL = os.environ.get("COMPAT_OFFICIAL", "1") != "0"


@dataclass(frozen=True)
class Suite:
    """One framework's own test suite, run from its sdist."""

    name: str
    version: str
    paths: tuple[str, ...]

    @property
    def source(self) -> Path:
        """Where the sdist is unpacked."""
        return CACHE / "src" / f"{self.name}-{self.version}"


SUITES = (
    Suite("flask", FLASK, ("tests",)),
    Suite("fastapi", FASTAPI, ("tests/test_tutorial",)),
)
MODES = ("bare", "otel-logkit-instrument", *(("opentelemetry-instrument",) if OFFICIAL else ()))
STRICTNESS = ("strict", "lenient")
Outcomes = dict[str, str]
NO_RESULTS: Outcomes = {}
"""A run that ended before writing its report (e.g. a warning turned error at start-up)."""


def main() -> int:
    """Prepare, run every suite in every mode, print the table, fail on any difference."""
    started = time.monotonic()
    python = prepare_venv()
    for suite in SUITES:
        unpack(python, suite)
    runs = [(suite, mode, strictness) for suite in SUITES for mode in MODES for strictness in STRICTNESS]
    results: dict[tuple[str, str, str], Outcomes] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=JOBS) as pool:
        futures = {
            pool.submit(run, suite, mode, strictness): (suite, mode, strictness) for suite, mode, strictness in runs
        }
        for future in concurrent.futures.as_completed(futures):
            suite, mode, strictness = futures[future]
            results[suite.name, mode, strictness] = future.result()
    differences = report(results)
    print(f"make compat: {time.monotonic() - started:.0f} s")
    if differences:
        print(f"make compat: FAILED, {differences} test(s) differ under otel-logkit-instrument")
        return 1
    print("make compat: no differences under otel-logkit-instrument")
    return 0


def prepare_venv() -> Path:
    """Create or update .cache/compat-venv; return its python."""
    python = VENV / "bin" / "python"
    wanted = f"flask=={FLASK} fastapi=={FASTAPI}\n".encode()
    for path in (REQUIREMENTS, ROOT / "pyproject.toml"):
        wanted += path.read_bytes()
    digest = hashlib.sha256(wanted).hexdigest()
    stamp = VENV / ".compat-installed"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "pip.log"
    with log.open("w") as output:
        done = subprocess.run(
            [*pip, "-e", f"{ROOT}[flask]", f"flask=={FLASK}", f"fastapi=={FASTAPI}", "-r", str(REQUIREMENTS)],
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        sys.stdout.write(log.read_text())
        raise SystemExit(f"make compat: could not install the suites' dependencies (see {log})")
    stamp.write_text(digest)
    return python


def unpack(python: Path, suite: Suite) -> None:
    """Download the suite's sdist from PyPI once and unpack it."""
    if suite.source.exists():
        return
    sdists = CACHE / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    archive = next(sdists.glob(f"{suite.name}-{suite.version}.tar.gz"), None)
    if archive is None:
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-d",
                str(sdists),
                f"{suite.name}=={suite.version}",
            ],
            check=True,
        )
        archive = sdists / f"{suite.name}-{suite.version}.tar.gz"
    target = suite.source.parent
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")


def run(suite: Suite, mode: str, strictness: str) -> Outcomes:
    """Run one suite once; return each test's outcome."""
    results = CACHE / "results"
    results.mkdir(parents=True, exist_ok=True)
    stem = f"{suite.name}-{suite.version}-{mode}-{strictness}"
    junit = results / f"{stem}.xml"
    junit.unlink(missing_ok=True)
    bin_dir = VENV / "bin"
    command = [str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    if strictness == "lenient":
        command += ["-o", "filterwarnings="]
    command += list(suite.paths)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "LOGKIT_", "PYTEST_", "PYTHON")) and key != "VIRTUAL_ENV"
    }
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "PYTHONDONTWRITEBYTECODE": "1"}
    if mode != "bare":
        env |= {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
        command = [str(bin_dir / mode), *command]
    if mode == "opentelemetry-instrument":
        env |= {"OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator"}
    with (results / f"{stem}.log").open("w") as log:
        subprocess.run(
            command,
            cwd=suite.source,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    if not junit.exists():
        return NO_RESULTS
    return outcomes(junit)


def outcomes(junit: Path) -> Outcomes:
    """Each test's outcome in a JUnit XML report: passed, failed, error or skipped."""
    found: Outcomes = {}
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    for case in ET.parse(junit).iter("testcase"):  # noqa: S314 - our own pytest run wrote this report
        test = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            kind = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(child.tag)
            if kind is not None and rank[kind] > rank[outcome]:
                outcome = kind
        if rank[outcome] >= rank[found.get(test, "passed")]:
            found[test] = outcome
    return found


def counts(results: Outcomes) -> str:
    """``passed/failed/error/skipped`` counts of one run."""
    if results is NO_RESULTS:
        return "no results"
    values = list(results.values())
    return "/".join(str(values.count(kind)) for kind in ("passed", "failed", "error", "skipped"))


def changed(bare: Outcomes, other: Outcomes) -> list[str]:
    """Tests whose outcome differs (including tests present in only one run)."""
    return sorted(
        f"{test}: {bare.get(test, 'absent')} -> {other.get(test, 'absent')}"
        for test in bare.keys() | other.keys()
        if bare.get(test) != other.get(test)
    )


def last_line(suite: Suite, mode: str, strictness: str) -> str:
    """The last non-empty line of a run's log (why a run wrote no report)."""
    log = CACHE / "results" / f"{suite.name}-{suite.version}-{mode}-{strictness}.log"
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(empty log)"


def report(results: dict[tuple[str, str, str], Outcomes]) -> int:
    """Print the table and the differing tests; return how many differ under otel-logkit-instrument."""
    width = max(len(mode) for mode in MODES) + 2
    print()
    print("per run: passed/failed/error/skipped, then tests whose outcome differs from bare")
    print(f"{'suite':<18}{'run':<{width}}{'strict':<28}{'lenient':<28}")
    failing = 0
    details: list[str] = []
    for suite in SUITES:
        name = label = f"{suite.name} {suite.version}"
        for mode in MODES:
            cells = []
            for strictness in STRICTNESS:
                run_results = results[suite.name, mode, strictness]
                cell = counts(run_results)
                if mode != "bare":
                    diff = changed(results[suite.name, "bare", strictness], run_results)
                    cell += f" ({len(diff)} differ)"
                    if diff:
                        if mode == "otel-logkit-instrument":
                            failing += len(diff)
                        details.append(f"{name} {mode} {strictness}: {len(diff)} differ")
                        if run_results is NO_RESULTS:
                            details.append(
                                f"    no report written; the run ended with: {last_line(suite, mode, strictness)}"
                            )
                        else:
                            details += [f"    {line}" for line in diff[:25]]
                            if len(diff) > 25:
                                details.append(f"    ... and {len(diff) - 25} more")
                cells.append(cell)
            print(f"{label:<18}{mode:<{width}}{cells[0]:<28}{cells[1]:<28}")
            label = ""
    if details:
        print()
        print("\n".join(details))
    print()
    print(f"logs and JUnit reports: {(CACHE / 'results').relative_to(ROOT)}/")
    return failing


if __name__ == "__main__":
    raise SystemExit(main())
