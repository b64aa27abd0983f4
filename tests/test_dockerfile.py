"""The Dockerfile, checked without a Docker engine: what it copies exists and is in the build
context, the image runs as an unprivileged user on a sane base, and the commands it runs (the
entrypoint, the health check) work when run the way the image runs them.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BROKER = Path(sys.executable).parent / "broker"   # the venv's console script, as pip installs it in the image
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


# -- reading the Dockerfile ------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue   # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def arguments(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def copies() -> list[tuple[list[str], str]]:
    """``(sources, destination)`` of every COPY/ADD from the build context."""
    out = []
    for kw, args in instructions():
        if kw not in ("COPY", "ADD"):
            continue
        words = shlex.split(args)
        assert not any(w.startswith("--from") for w in words), "one stage: no COPY --from"
        words = [w for w in words if not w.startswith("--")]
        out.append((words[:-1], words[-1]))
    return out


def ignored(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` (relative, '/'-separated) out of the build context."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        # A pattern matches the path or any folder it lies in.
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) or
               (pattern.startswith("**/") and fnmatch.fnmatch("/".join(parts[:i]), pattern[3:]))
               for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def tracked(path: str) -> list[str]:
    """Files under ``path`` that a clean clone has (the build context CI builds from)."""
    result = subprocess.run(["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.split()


# -- what the Dockerfile says ----------------------------------------------------------------------

def test_every_copy_source_exists_is_tracked_and_is_in_the_build_context():
    assert copies(), "the Dockerfile copies nothing"
    for sources, _ in copies():
        for source in sources:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: no such file or folder in the repository"
            files = tracked(path)
            assert files, f"COPY {source}: nothing under it is committed, so a clean clone cannot build"
            kept = [f for f in files if not ignored(f)]
            assert kept, f"COPY {source}: .dockerignore leaves none of it in the build context"


def test_the_image_gets_what_the_broker_reads():
    copied = {source.rstrip("/") for sources, _ in copies() for source in sources}
    # The package, its build metadata (pyproject names README.md as its readme), the shared settings,
    # the tenant files and the attribute map.
    assert {"broker", "pyproject.toml", PYPROJECT["project"]["readme"], "config", "tenants",
            "attribute_maps"} <= copied
    # The cities' metadata: copied as soon as the repository holds some (beyond the generated demo files).
    committed_metadata = [f for f in tracked("metadata") if not f.startswith("metadata/demo/")]
    if committed_metadata:
        assert "metadata" in copied, f"metadata/ holds {committed_metadata[:3]}... but the image lacks it"
    # Nothing that holds state, secrets or tests.
    assert not copied & {".", "var", "tests", ".venv", ".git", "metadata/demo"}


def test_dockerignore_keeps_out_state_tests_and_the_generated_demo_metadata():
    for path in (".venv/bin/python", "var/keys/master.secret", "var/registry/clients/a.json",
                 "tests/test_dockerfile.py", ".git/config", "metadata/demo/vantaa-idp.xml",
                 "broker/__pycache__/app.cpython-311.pyc"):
        assert ignored(path), f"{path} would be sent to the Docker daemon"
    for path in ("broker/app.py", "config/broker.yaml", "tenants/vantaa.yaml", "pyproject.toml", "README.md",
                 "attribute_maps/mpassid.py", "metadata/vantaa-idp.xml"):
        assert not ignored(path), f"{path} is needed in the image"


def test_base_image_is_python_311_slim_and_there_is_one_stage():
    froms = arguments("FROM")
    assert len(froms) == 1
    image = froms[0].split()[0]
    assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image


def test_it_runs_as_an_unprivileged_user():
    users = arguments("USER")
    assert users, "no USER: the broker would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit() and int(user) >= 1000, "a numeric id, so Kubernetes' runAsNonRoot can verify it"
    order = [kw for kw, _ in instructions()]
    assert order.index("USER") > max(i for i, kw in enumerate(order) if kw == "RUN"), \
        "every RUN before the switch to the unprivileged user"
    run = " ".join(arguments("RUN"))
    assert re.search(rf"useradd\b[^&]*--uid {user}\b", run), "the USER is created in the image"
    assert re.search(r"chown -R [^ ]+ /app/var", run), "the user can write keys and registrations"


def test_no_dev_dependencies_and_no_secrets_in_the_image():
    run = " ".join(arguments("RUN"))
    assert "[test]" not in run and "optional-dependencies" not in run
    assert "['project']['dependencies']" in run, "dependencies come from pyproject.toml"
    for package in ("pytest", "playwright", "hypothesis"):
        assert package not in run
    env_and_args = " ".join(arguments("ENV") + arguments("ARG")).upper()
    for secret in ("BROKER_SECRET", "PASSWORD", "TOKEN", "CLIENT_SECRET"):
        assert secret not in env_and_args, f"{secret} baked into the image"


def test_no_xmlsec1_in_the_image_and_the_removed_setting_is_refused():
    """SAML signatures are checked in-process only (decision 9): the image carries no xmlsec1 program, and a
    deployment still setting the old backend switch is told so at start instead of being silently ignored."""
    from broker.settings import Settings, SettingsError

    for value in ("xmlsec1", "in-process"):
        with pytest.raises(SettingsError, match="removed"):
            Settings.from_env({"BROKER_SIGNATURE_BACKEND": value, "BROKER_SECRET": "x" * 32})
    assert not re.search(r"\bxmlsec1\b", " ".join(arguments("RUN")))


def test_port_entrypoint_and_command():
    assert arguments("EXPOSE") == ["8000"]
    config = yaml.safe_load((ROOT / "config" / "broker.yaml").read_text())
    assert config["port"] == 8000, "the exposed port is the one the broker binds by default"
    assert exec_form(arguments("ENTRYPOINT")[-1]) == ["broker"]
    assert exec_form(arguments("CMD")[-1]) == ["serve"]
    assert PYPROJECT["project"]["scripts"]["broker"] == "broker.cli:main"


def healthcheck_command() -> list[str]:
    (args,) = arguments("HEALTHCHECK")
    command = args[args.index("CMD") + 3:].strip()
    return exec_form(command)


def test_healthcheck_asks_for_healthz():
    command = healthcheck_command()
    assert command[0] == "python"
    assert "/healthz" in command[-1]
    assert "BROKER_PORT" in command[-1], "it follows the port setting"


# -- running what the image runs ----------------------------------------------------------------------

def image_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A bare environment like the container's: PATH, HOME and the BROKER_* settings given."""
    env = {"PATH": f"{BROKER.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONWARNINGS": "ignore", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def container_env(stack, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The settings a container of the demo would be given (folders, URLs), plus ``overrides``."""
    settings = {k: v for k, v in stack.env().items() if k.startswith(("BROKER_", "DEMO_"))}
    return image_env(tmp_path, **{**settings, **overrides})


def run_broker(args: list[str], env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess:
    assert BROKER.exists(), f"{BROKER}: the package is not installed in this environment"
    # The image's WORKDIR is /app, the source tree.
    return subprocess.run([str(BROKER), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's keys, IdP metadata, secrets and registrations, prepared in a temporary folder."""
    from broker.demo.stack import DemoStack

    root = tmp_path_factory.mktemp("image")
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", registry_dir=root / "registry",
                      environ={})
    stack.prepare()
    secret = root / "run-secrets" / "broker"
    secret.parent.mkdir()
    secret.write_text("s" * 48 + "\n")
    return stack, secret


def test_broker_help_exits_zero_and_names_serve(tmp_path):
    result = run_broker(["--help"], image_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "check" in result.stdout
    result = run_broker(["serve", "--help"], image_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "--workers" in result.stdout


def test_broker_check_passes_with_what_the_container_is_given(demo, tmp_path):
    stack, secret = demo
    env = container_env(stack, tmp_path, BROKER_SECRET_FILE=str(secret))
    result = run_broker(["check"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.match(r"ok: 7 tenants, 10 identity providers, 2 OIDC clients, 0 SAML SPs", result.stdout), \
        result.stdout


def test_broker_check_fails_without_the_cities_metadata(demo, tmp_path):
    """The image ships no metadata: without a mounted folder the broker refuses to start."""
    stack, secret = demo
    env = container_env(stack, tmp_path, BROKER_SECRET_FILE=str(secret), BROKER_METADATA_DIR=str(tmp_path / "empty"))
    result = run_broker(["check"], env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "metadata" in result.stderr and "the broker will not start" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_short_secret_is_refused(demo, tmp_path):
    stack, _ = demo
    env = container_env(stack, tmp_path, BROKER_SECRET="too-short")
    result = run_broker(["check"], env)
    assert result.returncode == 2
    assert "BROKER_SECRET" in result.stderr and "too-short" not in result.stderr


def test_healthcheck_path_is_served_by_the_app(demo):
    from werkzeug.test import Client

    from broker.app import create_app

    stack, _ = demo
    app = create_app(stack.settings(master_secret=b"s" * 48))
    client = Client(app)
    path = re.search(r"/healthz\b", healthcheck_command()[-1]).group(0)
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_healthcheck_command_succeeds_against_a_running_broker_and_fails_without_one(demo, tmp_path):
    from broker.app import create_app
    from broker.demo.servers import free_port, serve_in_thread

    stack, _ = demo
    command = [sys.executable if word == "python" else word for word in healthcheck_command()]
    with serve_in_thread(create_app(stack.settings(master_secret=b"s" * 48)), "127.0.0.1", 0) as server:
        port = server.url.rsplit(":", 1)[1]
        ok = subprocess.run(command, env={**image_env(tmp_path), "BROKER_PORT": port}, capture_output=True,
                            timeout=30, check=False)
        assert ok.returncode == 0, ok.stderr
    down = subprocess.run(command, env={**image_env(tmp_path), "BROKER_PORT": str(free_port())},
                          capture_output=True, timeout=30, check=False)
    assert down.returncode != 0


# -- the package as the image installs it: non-editable, its deployment in BROKER_HOME ------------------

def test_the_image_installs_the_package_non_editable_and_drops_the_sources():
    run = " ".join(arguments("RUN"))
    assert re.search(r"pip install --no-deps /src\b", run), "the package is installed from its sources"
    assert not re.search(r"pip install[^&]* -e\b", run), "an editable install would tie the image to /src"
    assert "rm -rf /src" in run
    assert "BROKER_HOME=/app" in " ".join(arguments("ENV")), "the installed package finds its deployment in /app"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed non-editable into a folder of its own (as pip does in the image), and an
    image-like deployment folder: what the Dockerfile copies to /app."""
    import shutil

    root = tmp_path_factory.mktemp("installed")
    site = root / "site-packages"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                             "--target", str(site), str(ROOT)], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    app = root / "app"
    for sources, destination in copies():
        if destination.startswith("/src"):
            continue
        for source in sources:
            shutil.copytree(ROOT / source.rstrip("/"), app / destination.removeprefix("./").rstrip("/"),
                            ignore=shutil.ignore_patterns("demo", "__pycache__"))
    return site, app


def run_installed(installed, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python args`` with the non-editable install first on the path, from ``/`` (not the source tree)."""
    site, _ = installed
    return subprocess.run([sys.executable, *args], cwd="/", env={**env, "PYTHONPATH": str(site)},
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_images_own_import_check_passes_on_the_installed_package(installed, tmp_path):
    """The ``python -c`` checks the Dockerfile runs at build time import what exists."""
    site, _ = installed
    checks = [c for c in re.findall(r'python -c "(import [^"]+)"', " ".join(arguments("RUN"))) if "/src" not in c]
    assert checks, "the image checks its imports at build time"
    for check in checks:
        result = run_installed(installed, ["-c", check + "; import broker; print(broker.__file__)"],
                               image_env(tmp_path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith(str(site)), "imported from the installed package, not the sources"


def test_the_installed_package_takes_its_deployment_from_broker_home(installed, demo, tmp_path):
    _, app = installed
    stack, secret = demo
    env = container_env(stack, tmp_path, BROKER_SECRET_FILE=str(secret), BROKER_HOME=str(app))
    env = {k: v for k, v in env.items() if k not in ("BROKER_TENANTS_DIR", "BROKER_CONFIG_DIR")}
    where = run_installed(installed, ["-c", "from broker.settings import ROOT; print(ROOT)"], env)
    assert where.stdout.strip() == str(app.resolve()), where.stderr
    result = run_installed(installed, ["-m", "broker", "check"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 7 tenants"), result.stdout
