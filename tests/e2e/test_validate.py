"""`otelcol-logkit validate` accepts the base config with each overlay and with all three."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import BASE_CONFIG, OVERLAYS, ROOT, child_env

pytestmark = pytest.mark.e2e

COMBINATIONS = [
    ("loki",),
    ("cloudwatch",),
    ("elasticsearch",),
    ("spanmetrics",),
    ("loki", "cloudwatch", "elasticsearch"),
    ("loki", "cloudwatch", "elasticsearch", "spanmetrics"),
]


def _validate(binary: Path, configs: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    args = [str(binary), "validate"]
    for config in configs:
        args += ["--config", str(config)]
    env = child_env(LOGKIT_COLLECTOR_STORAGE_DIR=str(tmp_path))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("overlays", COMBINATIONS, ids=["+".join(c) for c in COMBINATIONS])
def test_base_with_overlays_validates(otelcol_bin: Path, tmp_path: Path, overlays: tuple[str, ...]) -> None:
    """The base config plus the overlays is a valid collector configuration."""
    result = _validate(otelcol_bin, [BASE_CONFIG, *(OVERLAYS[name] for name in overlays)], tmp_path)
    assert result.returncode == 0, result.stderr


def test_validate_rejects_a_pipeline_with_an_undefined_exporter(otelcol_bin: Path, tmp_path: Path) -> None:
    """validate really checks: an overlay naming an exporter nobody defined fails."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "service:\n  pipelines:\n    logs/broken:\n      receivers: [otlp]\n      exporters: [otlp_http/nowhere]\n"
    )
    result = _validate(otelcol_bin, [BASE_CONFIG, broken], tmp_path)
    assert result.returncode != 0
    assert "otlp_http/nowhere" in result.stderr


def test_overlays_add_distinct_pipelines_so_they_combine_without_merging_lists() -> None:
    """Each overlay defines its own pipelines; no two overlays share a pipeline name."""
    import yaml

    seen: dict[str, str] = {}
    base_pipelines = set(yaml.safe_load(BASE_CONFIG.read_text())["service"]["pipelines"])
    for name, path in OVERLAYS.items():
        config = yaml.safe_load(path.read_text())
        assert set(config["service"]) == {"pipelines"}, f"{name} must only add pipelines under service"
        for pipeline in config["service"]["pipelines"]:
            assert pipeline not in base_pipelines, f"{name} redefines base pipeline {pipeline}"
            assert pipeline not in seen, f"{name} and {seen.get(pipeline)} both define {pipeline}"
            seen[pipeline] = name


ENV_ONLY_KEYS = frozenset(
    {
        "endpoint",
        "password",
        "api_key",
        "user",
        "log_group_name",
        "log_stream_name",
        "region",
        "directory",
        "host",
        "port",
    }
)


def _env_only_violations(node: object, path: str = "") -> list[str]:
    if isinstance(node, dict):
        found: list[str] = []
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in ENV_ONLY_KEYS and not (isinstance(value, str) and value.startswith("${env:")):
                found.append(f"{where}={value!r}")
            found += _env_only_violations(value, where)
        return found
    if isinstance(node, list):
        return [v for i, item in enumerate(node) for v in _env_only_violations(item, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("config", [BASE_CONFIG, *OVERLAYS.values()], ids=lambda p: p.name)
def test_every_address_credential_and_name_comes_from_the_environment(config: Path) -> None:
    """No endpoint, credential, group, region or path is written in the YAML: all are ${env:VAR:-default}."""
    import yaml

    assert _env_only_violations(yaml.safe_load(config.read_text())) == []
