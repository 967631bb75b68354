"""docker-compose.yml checked without a Docker engine (issue 9 #5): valid YAML, the services
the README promises, each command runnable from the image (its executable is installed by our
dependencies, its Django/Celery target exists), health checks, one beat, secrets only from the
environment."""

import importlib.util
import re
import shutil
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_services_and_health_checks():
    assert {"postgres", "redis", "web", "worker", "beat", "migrate"} <= set(SERVICES)
    for name in ("postgres", "redis", "web", "worker", "worker-payments"):
        assert "healthcheck" in SERVICES[name], name
    assert "noeviction" in " ".join(SERVICES["redis"]["command"])
    assert SERVICES["beat"].get("deploy", {}).get("replicas", 1) == 1


def _command(service):
    command = SERVICES[service].get("command")
    return command if isinstance(command, list) else command.split()


def test_every_command_exists_in_the_image():
    deps = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for service in ("web", "worker", "beat", "migrate"):
        argv = _command(service)
        exe = argv[0]
        if exe == "python":
            assert argv[1] == "manage.py" and (ROOT / "manage.py").exists()
            from django.core.management import get_commands

            assert argv[2] in get_commands(), argv
        else:
            assert re.search(rf"\b{exe}\b", deps), f"{exe} is not a dependency"
            assert shutil.which(exe, path=str(ROOT / ".venv" / "bin")) or shutil.which(exe)
        if exe == "gunicorn":
            module, _, attr = argv[1].partition(":")
            assert importlib.util.find_spec(module) and attr == "application"
        if exe == "celery":
            assert argv[1:3] == ["-A", "config"]
    beat = " ".join(_command("beat"))
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat
    queues = {}
    for service in ("worker", "worker-payments"):
        argv = _command(service)
        assert argv[:4] == ["celery", "-A", "config", "worker"], service
        queues[service] = set(argv[argv.index("-Q") + 1].split(","))
    # Every queue is consumed; a long sync never holds the real-time payment work.
    assert queues["worker"] | queues["worker-payments"] == {
        "sync",
        "writeback",
        "webhooks",
        "default",
    }
    assert queues["worker-payments"] == {"webhooks", "writeback"}
    assert "sync" not in queues["worker-payments"]


def test_app_settings_come_from_the_environment():
    env = COMPOSE["x-app"]["environment"]
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    for key in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "AUTOTASK_INTEGRATION_CODE"):
        assert env[key].startswith("${") and ":?" in env[key], key  # required, no default


def test_readme_production_section_matches():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Operations") :]
    for word in (
        "migrate",
        "web",
        "gunicorn",
        "worker",
        "beat",
        "noeviction",
        "/healthz",
        "/readyz",
        "SECRET_KEY",
        "FIELD_ENCRYPTION_KEYS",
        "AUTOTASK_INTEGRATION_CODE",
        "POSTGRES_PASSWORD",
        "ALLOWED_HOSTS",
    ):
        assert word in section, word


def test_dockerfile_installs_the_project_and_runs_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    assert "USER paysync" in dockerfile
    assert "collectstatic" in dockerfile
