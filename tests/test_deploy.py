"""docker-compose.yml, Dockerfiles and the systemd unit, checked without a Docker engine."""

import argparse
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from deploy import images

from neurojam.cli import build_parser
from tests.conftest import ROOT, run_cli

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


def test_each_service_runs_a_real_subcommand_that_parses():
    commands = subcommands()
    parser = build_parser()
    for name, svc in COMPOSE["services"].items():
        cmd = svc["command"]
        assert cmd[0] == "neurojam" and cmd[1] in commands, name
        resolved = [re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: "5555" if "PORT" in m.group(1) else "x", c)
                    for c in cmd[1:]]
        parser.parse_args(resolved)  # exits on an unknown option


def test_profiles_split_the_machines():
    services = COMPOSE["services"]
    assert services["brain"]["profiles"] == ["brain"] and services["rig"]["profiles"] == ["rig"]
    gpu = services["brain"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    rig = services["rig"]
    assert not rig.get("privileged") and rig["network_mode"] == "host"
    assert any("/dev/gpiomem" in d for d in rig["devices"]) and any("/dev/snd" in d for d in rig["devices"])


def test_environment_variables_are_consistent():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    assert {"NEUROJAM_BRAIN_HOST", "NEUROJAM_EVENTS_PORT", "NEUROJAM_COMMANDS_PORT"} <= used
    ports = {v for s in COMPOSE["services"].values() for c in s["command"] if c.startswith("bridge.")
             for v in re.findall(r"\$\{(\w+_PORT)", c)}
    assert ports == {"NEUROJAM_EVENTS_PORT", "NEUROJAM_COMMANDS_PORT"}  # every node uses the same two
    assert "NEUROJAM_BRAIN_HOST" in " ".join(COMPOSE["services"]["rig"]["command"])


def test_the_locked_wire_gets_its_keys():
    services = COMPOSE["services"]
    brain, rig = " ".join(services["brain"]["command"]), " ".join(services["rig"]["command"])
    assert "bridge.allowed_keys=${NEUROJAM_ALLOWED_KEYS:-[]}" in brain and "bridge.bind_host=0.0.0.0" in brain
    assert "bridge.brain_public_key='${NEUROJAM_BRAIN_KEY:-}'" in rig
    stage = " ".join(services["stage"]["command"])  # on the LAN: the page's token, and the wire's keys
    assert "stage.token=${NEUROJAM_STAGE_TOKEN:-}" in stage and "bridge.brain_public_key='${NEUROJAM_BRAIN_KEY:-}'" in stage
    for svc in services.values():
        assert any(v.endswith(":/app/keys:ro") for v in svc["volumes"]) and "bridge.keys_dir=/app/keys" in svc["command"]
    unit = (ROOT / "deploy" / "neurojam-rig.service").read_text()
    assert "bridge.brain_public_key='${NEUROJAM_BRAIN_KEY}'" in unit


def test_rig_image_installs_no_torch():
    rig = (ROOT / "deploy" / "rig.Dockerfile").read_text()
    assert "torch" not in rig.replace("no torch", "") and ".[rig" in rig
    assert "torch==" in (ROOT / "deploy" / "brain.Dockerfile").read_text()


def test_systemd_unit_runs_the_rig():
    unit = (ROOT / "deploy" / "neurojam-rig.service").read_text()
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert " rig " in exec_line and "KillSignal=SIGINT" in unit


def test_configs_found_outside_the_checkout(tmp_path):
    """Docker images and systemd run an installed package: configs come from NEUROJAM_CONFIG_DIR or ./configs."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "configs", tmp_path / "cfg")
    code = "import neurojam.config as c; print(c.resolve_profile('lab').parent)"
    env = {**os.environ, "NEUROJAM_CONFIG_DIR": str(tmp_path / "cfg"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.strip() == str(tmp_path / "cfg"), r.stderr  # the variable wins
    for d in ("ENV NEUROJAM_CONFIG_DIR=/app/configs", "COPY configs configs"):
        assert d in (ROOT / "deploy" / "rig.Dockerfile").read_text()
        assert d in (ROOT / "deploy" / "brain.Dockerfile").read_text()


def parser_actions(parser: argparse.ArgumentParser, path: str = "neurojam"):
    """Every argument of every subcommand, with the command it belongs to."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parser_actions(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def test_every_argument_says_what_it_is_for():
    missing = [f"{path} {a.option_strings[0] if a.option_strings else a.dest}"
               for path, a in parser_actions(build_parser()) if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []


def test_the_help_check_can_fail():
    ap = argparse.ArgumentParser()
    ap.add_subparsers().add_parser("x").add_argument("--quiet")
    assert [a.dest for _, a in parser_actions(ap) if not a.help] == ["quiet"]


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("neurojam ")


def test_no_profile_demands_another_machines_variables():
    """Compose checks `${VAR:?}` in every service, whatever the profile: the Pi would need the brain's keys."""
    assert ":?" not in (ROOT / "docker-compose.yml").read_text()


@pytest.mark.parametrize("value, says", [("bridge.allowed_keys=[]", "bridge.allowed_keys is empty"),
                                         ("bridge.host=", "'bridge.host' is wrong")])
def test_a_missing_variable_is_named_by_the_node(tmp_path, value, says):
    args = ["brain", "--set", "bridge.curve=on", "--set", f"bridge.keys_dir={tmp_path}"] if "allowed" in value else \
        ["rig", "--seconds", "1"]
    if "allowed" in value:
        run_cli("keys", "init", "--node", "brain", "--dir", str(tmp_path))
    r = run_cli(*args, "--set", value, timeout=120)
    assert r.returncode != 0 and says in r.stderr, r.stdout + r.stderr


def test_the_dockerfiles_copy_what_deploy_images_derives():
    for name in images.IMAGES:
        assert images.dockerfile(name).read_text() == images.rendered(name), f"run python deploy/images.py ({name})"


ENTRY = {"rig": ["rig", "--help"], "brain": ["brain", "--help"]}
IMPORTS = {"rig": "import rig.node, rig.devices, rig.keys", "brain": "import brain.live.node, stage.server"}


def start_from(tmp_path, files: list[str], image: str) -> subprocess.CompletedProcess:
    """Copy ``files`` alone (no checkout, no editable install) and run the image's entry point from them."""
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    code = ("import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
            f"sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if p and (p.startswith({str(ROOT / '.venv')!r})"
            f" or not p.startswith({str(ROOT)!r}))]\n"
            f"{IMPORTS[image]}\n"
            "import core\n"
            f"assert core.__file__.startswith({str(tmp_path)!r}), core.__file__\n"
            f"sys.argv = ['neurojam', *{ENTRY[image]!r}]\n"
            "import neurojam.cli.__main__\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "NEUROJAM_CONFIG_DIR": str(tmp_path / "configs")})


@pytest.mark.parametrize("image", sorted(images.IMAGES))
def test_each_image_starts_from_exactly_its_files(tmp_path, image):
    r = start_from(tmp_path, images.files_of(image), image)
    assert r.returncode == 0 and "usage: neurojam" in r.stdout, r.stderr[-2000:]


def test_the_image_check_can_fail(tmp_path):
    """The rig image as it was (rig, bridge, neurojam and configs only) does not start, and the check says why."""
    old = [f for f in images.files_of("rig") if f.split("/")[0] in ("rig", "bridge", "neurojam", "configs")]
    r = start_from(tmp_path, old, "rig")
    assert r.returncode != 0 and "No module named" in r.stderr
