"""Studies on local Ray: 3 sessions × 2 models, the tables' rows and schema, resume, a failing task, and the same
numbers as the one-session commands."""

import json
import shutil

import pytest

from tests.conftest import ROOT, run_cli

ray = pytest.importorskip("ray", reason="neurojam[study] is part of the test install (scripts/setup.sh)")

MELODY = ROOT / "configs" / "melodies" / "soldiers-joy.mid"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three short synthesized jams, the shipped model and its random-weight twin saved as a model folder."""
    from brain.models import MODELS_DIR, load_model
    from brain.science.controls import random_weights
    from recording.synthetic import melody_from_midi, write_melody_session

    root = tmp_path_factory.mktemp("study")
    melody = melody_from_midi(MELODY)
    for i in range(3):
        write_melody_session(root / "sessions" / f"jam{i}", melody[i * 16:i * 16 + 48], pet_every_beats=3, seed=i)
    twin_dir = root / "twin"
    shutil.copytree(MODELS_DIR / "notes-default", twin_dir,
                    ignore=shutil.ignore_patterns("neuron_*", "README.md", "*.png"))
    from safetensors.torch import save_file

    twin = random_weights(load_model("notes-default", "cpu"), seed=1)
    save_file({k: v.contiguous() for k, v in twin.bridge.state_dict().items()}, str(twin_dir / "model.safetensors"))
    spec = root / "study.yaml"
    spec.write_text(f"sessions: ['sessions/*']\nmodels: [notes-default, {twin_dir}]\n"
                    f"measures: [score, neuron_stats, match]\n")
    return root, spec


def run(spec, out, *extra):
    return run_cli("study", str(spec), "--out", str(out), "--workers", "2", *extra, timeout=600)


def test_a_study_on_local_ray_resumes_and_matches_the_one_session_commands(study):
    from brain.science.study import read_results

    root, spec = study
    out = root / "out"
    r = run(spec, out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "13 tasks done, 0 finished before" in r.stdout, r.stdout  # 3 sessions × 2 models × 2 measures + 1 match
    files = sorted(p.relative_to(out).parts[0] for p in out.glob("measure=*/*.parquet"))
    assert files.count("measure=score") == 6 and files.count("measure=neuron_stats") == 6 and \
        files.count("measure=match") == 1
    rows = read_results(out)
    assert list(rows.columns) == ["experiment", "session", "model", "settings", "site", "layer", "neuron", "position",
                                  "token", "metric", "value", "created_utc"]
    stats = rows[rows.experiment == "neuron_stats"]
    assert len(stats) == 6 * 2 * 4 * 512 and stats.value.between(-1, 100).all()
    assert rows[rows.experiment == "match"].metric.eq("best_match_r").sum() == 4 * 512

    # the same numbers as `neurojam score` on a replay of the same session with the same model
    session = sorted((root / "sessions").iterdir())[0]
    rep = run_cli("replay", str(session), "--fast", "--set", f"session.dir={root / 'replays'}")
    assert rep.returncode == 0, rep.stderr
    replayed = sorted((root / "replays").iterdir())[-1]
    one = json.loads(run_cli("score", str(replayed), "--json").stdout)
    mine = rows[(rows.experiment == "score") & (rows.session == str(session)) & (rows.model == "notes-default")]
    got = dict(zip(mine.metric, mine.value))
    for metric in ("key_fit", "harmony", "brain_notes", "prediction_hits", "response_rho"):
        assert got[metric] == pytest.approx(one[metric]), metric

    # resume: nothing finished is recomputed; a lost result is
    lost = next((out / "measure=neuron_stats").glob("*.parquet"))
    lost.unlink()
    again = run(spec, out)
    assert again.returncode == 0 and "1 tasks done, 12 finished before" in again.stdout, again.stdout
    show = run_cli("study", "show", str(out))
    assert show.returncode == 0 and "score per model" in show.stdout and "cross-model match" in show.stdout, \
        show.stdout + show.stderr
    assert (out / "plots" / "firing-rates.png").exists()


def test_a_failing_task_is_recorded_while_the_rest_complete(study, tmp_path):
    root, _ = study
    broken = root / "sessions-broken"
    shutil.copytree(root / "sessions", broken)
    (broken / "jam1" / "events.njlog").write_bytes(b"not a session log at all" * 10)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"sessions: ['{broken}/*']\nmodels: [notes-default]\nmeasures: [score]\nretries: 1\n")
    out = tmp_path / "out"
    r = run(spec, out)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 tasks done" in r.stdout and "1 failed" in r.stdout, r.stdout
    errors = [json.loads(p.read_text()) for p in (out / "errors").glob("*.json")]
    assert len(errors) == 1 and errors[0]["session"].endswith("jam1") and errors[0]["error"]


def test_without_ray_it_says_how_to_get_it(tmp_path):
    """An install without the extra: `import ray` fails (a stand-in package that raises ImportError shadows it)."""
    import os

    blocker = tmp_path / "blocker" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("sessions: ['nothing/*']\nmodels: [notes-default]\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "blocker"), str(ROOT)])}
    r = run_cli("study", str(spec), env=env)
    assert r.returncode == 2 and "pip install 'neurojam[study]'" in r.stderr, r.stderr
    bad = run_cli("study", str(spec), "--serial")
    assert bad.returncode == 2 and "name no session folder" in bad.stderr, bad.stderr


def test_a_study_of_features_reads_each_models_dictionary(study, tmp_path):
    """`--units features`: feature firing rates at each feature's own gate, and features matched across two copies of
    the model (each firing feature's best match is itself, at r = 1); the tables say the units are features."""
    from brain.science.study import FEATURE_SITE, headline_tables, read_results
    from brain.units.features import load_features
    from brain.models import load_model

    from brain.models import MODELS_DIR

    root, _ = study
    shutil.copytree(MODELS_DIR / "notes-default", tmp_path / "copy", ignore=shutil.ignore_patterns("*.png", "*.md"))
    spec = tmp_path / "features.yaml"
    spec.write_text(f"sessions: ['{root}/sessions/jam0']\nmodels: [notes-default, {tmp_path / 'copy'}]\n"
                    f"measures: [neuron_stats, match]\n")
    out = tmp_path / "out"
    r = run_cli("study", str(spec), "--out", str(out), "--serial", "--units", "features", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = read_results(out)
    latents = load_features(load_model("notes-default", "cpu")).n_latents
    rate = rows[(rows.experiment == "neuron_stats") & (rows.metric == "firing_rate")]
    assert len(rate) == 2 * 4 * latents and (rate.site == FEATURE_SITE).all()
    assert rate.value.between(0, 1).all() and (rate.value > 0).sum() >= 20
    match = rows[rows.experiment == "match"]
    assert len(match) == 4 * latents and (match.site == FEATURE_SITE).all()
    fired = set(zip(rate.layer[rate.value > 0], rate.neuron[rate.value > 0]))
    mine = match[[(lay, n) in fired for lay, n in zip(match.layer, match.neuron)]]
    assert len(mine) >= 20 and (mine.value > 0.999).all()
    tables = headline_tables(out)  # what `study show` prints (the command itself: the test above)
    assert all("(feature)" in row[1] for row in tables["firing rate across sessions (top neurons per model)"])
    assert "features" in tables["cross-model match (best Pearson r of each neuron of A in B)"][0][2]
