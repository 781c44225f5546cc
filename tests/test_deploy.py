"""docker-compose.yml, Dockerfiles and the systemd unit, checked without a Docker engine."""

import argparse
import re

import yaml

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
    assert "bridge.allowed_keys=${NEUROJAM_ALLOWED_KEYS:?" in brain and "bridge.bind_host=0.0.0.0" in brain
    assert "bridge.brain_public_key='${NEUROJAM_BRAIN_KEY:?" in rig
    stage = " ".join(services["stage"]["command"])  # on the LAN: the page's token, and the wire's keys
    assert "stage.token=${NEUROJAM_STAGE_TOKEN:?" in stage and "bridge.brain_public_key='${NEUROJAM_BRAIN_KEY:?" in stage
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
