from pathlib import Path

import pytest

from core.errors import ConfigError
from neurojam.config import load_config
from tests.conftest import ROOT, run_cli


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "profile.yaml"
    p.write_text(text)
    return p


def check(path: Path):
    r = run_cli("config", "check", str(path), "-q")
    return r.returncode, r.stderr


def test_layering_profile_then_set(tmp_path):
    p = write(tmp_path, "rig:\n  tempo_bpm: 90\n  sim_pet: {enabled: true}\n")
    c = load_config(p, ["rig.tempo_bpm=100"])
    assert c.rig.tempo_bpm == 100  # --set beats the profile
    assert c.rig.sim_pet.enabled is True  # the profile beats the default
    assert c.rig.dispenser.pin == 27  # untouched defaults stay


@pytest.mark.parametrize("profile", ["lab", "pi", "gpu"])
def test_shipped_profiles_are_valid(profile):
    load_config(profile)


def test_unknown_key_suggests(tmp_path):
    code, err = check(write(tmp_path, "rig:\n  tempoo: 100\n"))
    assert code == 2
    assert "rig.tempoo" in err and "Did you mean 'tempo_bpm'" in err
    assert str(tmp_path / "profile.yaml") in err
    assert "Traceback" not in err


def test_wrong_type(tmp_path):
    code, err = check(write(tmp_path, "rig:\n  tempo_bpm: fast\n"))
    assert code == 2 and "rig.tempo_bpm" in err and "expected float" in err and "Traceback" not in err


@pytest.mark.parametrize("text,key,allowed", [
    ("rig:\n  tempo_bpm: 400\n", "rig.tempo_bpm", "<= 300"),
    ("rig:\n  tempo_bpm: 5\n", "rig.tempo_bpm", ">= 20"),
    ("rig:\n  pads: [{pin: 28}]\n", "rig.pads[0].pin", "<= 27"),
    ("rig:\n  pads: [{pin: 3, sound: {notes: [128]}}]\n", "rig.pads[0].sound.notes[0]", "<= 127"),
    ("rig:\n  pads: [{pin: 3, sound: {velocity: -1}}]\n", "rig.pads[0].sound.velocity", ">= 0"),
    ("bridge:\n  events_port: 70000\n", "bridge.events_port", "<= 65535"),
    ("bridge:\n  commands_port: 0\n", "bridge.commands_port", ">= 1"),
])
def test_out_of_range_names_key_and_range(tmp_path, text, key, allowed):
    code, err = check(write(tmp_path, text))
    assert code == 2, err
    assert key in err and allowed in err and "Traceback" not in err


def test_missing_file(tmp_path):
    code, err = check(tmp_path / "nope.yaml")
    assert code == 2 and "not found" in err and "Traceback" not in err


def test_bad_yaml_says_line(tmp_path):
    code, err = check(write(tmp_path, "rig:\n  tempo_bpm: [1,\n"))
    assert code == 2 and "not valid YAML" in err and "line" in err


def test_misspelt_profile_name():
    with pytest.raises(ConfigError, match="Did you mean 'lab'"):
        load_config("lbb")


def test_set_override_errors_blame_the_override():
    with pytest.raises(ConfigError, match=r"--set rig.tempo_bpm=999"):
        load_config(None, ["rig.tempo_bpm=999"])
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(None, ["rig.tempo_bpm"])


def test_config_show_prints_merged():
    r = run_cli("config", "show", "--config", "lab", "--set", "rig.tempo_bpm=99")
    assert r.returncode == 0, r.stderr
    assert "tempo_bpm: 99" in r.stdout


def test_schema_lists_every_section():
    r = run_cli("config", "schema")
    assert r.returncode == 0
    for key in ("bridge.events_port", "rig.dispenser.max_per_minute", "brain.model", "rig.pads[].pin"):
        assert key in r.stdout


def test_config_reference_doc_is_current():
    from neurojam.cli.config_reference import render
    from tests.conftest import ROOT

    assert (ROOT / "docs" / "config-reference.md").read_text().strip() == render().strip(), \
        "regenerate with: neurojam config schema > docs/config-reference.md"


def test_default_yaml_is_what_config_show_prints():
    """The defaults live in the section Structs only; configs/default.yaml is their printout."""
    from neurojam.config import default_yaml
    from tests.conftest import ROOT

    shipped = (ROOT / "configs" / "default.yaml").read_text()
    assert shipped == default_yaml(), "regenerate with: python -c 'from neurojam.config import default_yaml; " \
                                      "print(default_yaml(), end=\"\")' > configs/default.yaml"
    r = run_cli("config", "show")
    assert r.returncode == 0 and r.stdout in shipped


def test_the_pads_default_lives_in_the_rig_section():
    from rig.config import RigConfig

    assert [p.name for p in RigConfig().pads] == ["kick", "snare", "bell", "low"]
    assert load_config(None, ["rig.pads=[]"]).rig.pads == []  # a layer replaces the list


def test_a_list_item_cannot_be_set_and_the_error_says_what_can():
    r = run_cli("config", "show", "--set", "rig.pads.0.pin=40")
    assert r.returncode == 2 and "'rig.pads' is a list" in r.stderr and "--config" in r.stderr, r.stderr


def test_a_missing_profile_names_each_folder_once():
    r = run_cli("config", "show", "--config", "no-such-profile")
    assert r.returncode == 2 and r.stderr.count(str(ROOT / "configs")) == 1, r.stderr
