"""The production compose stack: valid against the Compose specification and in step with the code it runs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.tools.cli import app as cli_app
from streams.runtime.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def _docker_compose():
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is required: ./dev test installs it"
    return exe


def test_compose_file_is_valid_and_a_broken_one_is_not(tmp_path):
    ok = subprocess.run([_docker_compose(), "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restartt: unless-stopped", 1))
    out = subprocess.run([_docker_compose(), "-f", str(bad), "config", "-q"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0 and "restartt" in out.stderr


def test_services_run_commands_the_cli_has(compose):
    commands = {c.name or c.callback.__name__ for c in cli_app.registered_commands}
    for name, svc in compose["services"].items():
        cmd = svc.get("command")
        if svc.get("image", "").startswith("onestop-monitor") and isinstance(cmd, list) and not svc.get("entrypoint"):
            assert cmd[0] in commands, (name, cmd)
    sim = compose["services"]["simulator"]["command"][0]
    assert all(c in commands for c in re.findall(r"onestop (\w+)", sim))


def test_worker_environment_names_real_settings(compose):
    fields = {f.upper() for f in WorkerSettings.__dataclass_fields__}
    for name in ("worker-1", "worker-2"):
        env = compose["services"][name]["environment"]
        for key in env:
            assert key.startswith("ONESTOP_") and key.removeprefix("ONESTOP_") in fields, key
        WorkerSettings.from_env({k: str(v) for k, v in env.items()})  # the values parse


def test_prometheus_scrapes_every_worker_on_its_port_and_loads_the_rules(compose):
    prom = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    targets = {t for sc in prom["scrape_configs"] for st in sc["static_configs"] for t in st["targets"]}
    workers = {n: s for n, s in compose["services"].items() if n.startswith("worker-")}
    assert targets == {f"{s['hostname']}:{s['environment']['ONESTOP_WEB_PORT']}" for s in workers.values()}
    mounted = {v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./")}
    assert set(prom["rule_files"]) <= mounted


def test_every_mounted_file_exists(compose):
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            if vol.startswith("./"):
                assert (ROOT / vol.split(":")[0]).exists(), (name, vol)


def test_ports_are_loopback_only_and_images_pinned(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
        image = svc.get("image", "")
        if not image.startswith("onestop-monitor"):
            assert re.search(r":v?\d+\.\d+\.\d+$", image), (name, image)
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:4.")
    assert compose["services"]["prometheus"]["image"].startswith("prom/prometheus:v3.")
    assert compose["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
