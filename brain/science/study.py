"""Studies: many sessions × many models × many measures as one table, on this machine or a Ray cluster.

A study is a small YAML spec (``neurojam study SPEC``)::

    sessions: ["sessions/2026-*/", "demo-out/*/session"]   # globs, relative to the spec's folder
    models: [notes-default, /models/notes-seed2]
    measures: [score, neuron_stats, layer_skip, match]

Each (session, model, measure) is one task — ``match`` is one task per pair of models over all the sessions — run
as a Ray task (in-process local Ray by default, ``--address`` for a cluster; ``--serial`` without Ray). Replays go
through the brain core in the worker, without sockets. Every finished task writes its rows (the experiments'
schema, :mod:`brain.science.results`) to ``OUT/measure=<measure>/<task id>.parquet`` at once, so a study stopped
half-way keeps what it finished and a rerun recomputes nothing finished (the task id is a hash of what the task
reads and how). A task that fails is retried (``retries``); if it fails again its error is written to
``OUT/errors/<task id>.json`` and the rest of the study goes on (a rerun tries it again). A worker that dies is
retried by Ray the same way.

Measures, one row per unit and metric:

- ``score``: the session replayed through the model (the configured band) and scored (:mod:`recording.score`): one
  row per figure (``key_fit``, ``harmony``, ...).
- ``neuron_stats``: the session read as the live brain read it: each neuron's ``firing_rate`` (share of events at or
  above the gate) and ``mean_normalized`` activation.
- ``layer_skip``: each layer skipped in turn: ``loss_change`` of the session's next-note loss.
- ``match``: for each neuron of the first model, ``best_match_r`` (Pearson r over the sessions' words) with the
  second model's neurons; the best match's id in ``token``.

With ``--units features`` (``brain.units``) the unit measures are about each model's dictionary features instead:
``neuron_stats`` counts a feature as firing at the gate × its own calibration quantile (as the live brain plays it),
``match`` pairs each feature of A with the most correlated feature of B's own dictionary, and ``score`` replays
with features playing. Their rows carry the site :data:`FEATURE_SITE`; a model without a dictionary fails its
tasks with the command that trains one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import msgspec

from core.errors import ConfigError
from core.units import NeuronId

if TYPE_CHECKING:
    import pandas

MEASURES = ("score", "neuron_stats", "layer_skip", "match")
SCHEMA_VERSION = 1
NEURON_SITE = "mlp.hook_post"
FEATURE_SITE = "mlp.hook_post.features"
"""A dictionary feature over ``blocks.L.mlp.hook_post`` (its index in ``neuron``)."""
"""Part of every task id: a change to what a measure computes changes it, so old rows are not mistaken for new."""


class StudySpec(msgspec.Struct, forbid_unknown_fields=True):
    sessions: list[str]
    """Globs of session folders (relative to the spec's folder)."""
    models: list[str]
    """Model names or model folders; ``match`` pairs the first with each other."""
    measures: list[str] = msgspec.field(default_factory=lambda: ["score", "neuron_stats"])
    gate: float = 0.9
    """The firing threshold of ``neuron_stats`` (share of a neuron's calibration quantile)."""
    retries: int = 1
    device: str = "cpu"
    num_gpus: float = 0.0
    """GPUs each task asks Ray for (e.g. 0.5 to share one between two workers; 0 on a CPU cluster)."""


@dataclass(frozen=True)
class Task:
    measure: str
    session: str
    """A session folder ('' for ``match``, which reads all of them)."""
    models: tuple[str, ...]

    def id(self, spec: StudySpec, sessions: tuple[str, ...] = (), settings_key: str = "") -> str:
        """``settings_key``: a hash of the brain settings replays use (``--set brain.sonify.gate=...`` is a new
        study, not a finished one)."""
        what = [SCHEMA_VERSION, self.measure, self.session, self.models, spec.gate,
                list(sessions) if self.measure == "match" else [], settings_key]
        return hashlib.sha1(json.dumps(what).encode()).hexdigest()[:16]


def load_spec(path: str | Path) -> tuple[StudySpec, list[str]]:
    """The spec and the session folders its globs name (sorted); a clear :class:`ConfigError` for any mistake."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"study spec {path}: no such file.")
    try:
        spec = msgspec.convert(yaml.safe_load(path.read_text()) or {}, StudySpec)
    except (msgspec.ValidationError, yaml.YAMLError) as exc:
        raise ConfigError(f"study spec {path}: {exc}. It needs `sessions:` (globs) and `models:`; measures are "
                          f"{', '.join(MEASURES)}.") from exc
    unknown = [m for m in spec.measures if m not in MEASURES]
    if unknown:
        raise ConfigError(f"study spec {path}: unknown measure {', '.join(unknown)}; choose from {', '.join(MEASURES)}.")
    if not spec.models:
        raise ConfigError(f"study spec {path}: name at least one model under `models:`.")
    if "match" in spec.measures and len(spec.models) < 2:
        raise ConfigError(f"study spec {path}: `match` compares models: name at least two.")
    # a model named by a folder beside the spec (`twin`, `models/mine`) is found there, as its session globs are;
    # a name that is no folder there stays a model name (notes-default, gpt2, a Hugging Face repo id)
    spec.models = [str((path.parent / m).resolve()) if not Path(m).is_absolute() and (path.parent / m).is_dir()
                   else m for m in spec.models]
    sessions: list[str] = []
    for pattern in spec.sessions:
        full = pattern if Path(pattern).is_absolute() else str(path.parent / pattern)
        sessions += [str(Path(p).resolve()) for p in glob.glob(full) if (Path(p) / "events.njlog").exists()]
    sessions = sorted(set(sessions))
    if not sessions:
        raise ConfigError(f"study spec {path}: its globs ({', '.join(spec.sessions)}) name no session folder (one "
                          f"holding events.njlog).")
    return spec, sessions


def plan(spec: StudySpec, sessions: list[str]) -> list[Task]:
    """The longest tasks first (a match reads every session), so no core waits for one at the end."""
    tasks = [Task("match", "", (spec.models[0], other)) for other in spec.models[1:]] if "match" in spec.measures \
        else []
    return tasks + [Task(m, s, (model,)) for s in sessions for model in spec.models for m in spec.measures
                    if m != "match"]


# -- the work of one task (runs in a Ray worker, or here with --serial) ---------------------------------------------
_MODELS: dict[str, object] = {}


def _model(name: str, device: str):
    """Each worker process loads a model once and keeps it for its next tasks."""
    if name not in _MODELS:
        from brain.models import load_model

        _MODELS[name] = load_model(name, device)
    return _MODELS[name]


def run_task(task: Task, spec: StudySpec, sessions: tuple[str, ...], work: str, settings) -> bytes:
    """The task's rows, as Parquet bytes (what travels back from a worker)."""
    import io

    import pyarrow.parquet as pq
    import torch

    torch.set_num_threads(1)  # one worker per core: the study's parallelism is across tasks
    rows = MEASURE_FUNCTIONS[task.measure](task, spec, sessions, Path(work), settings)
    buf = io.BytesIO()
    pq.write_table(rows.table(), buf)
    return buf.getvalue()


def _rows(task: Task, spec: StudySpec, **settings):
    from brain.science.results import ResultRows

    return ResultRows(task.measure, task.models[0], task.session, {"gate": spec.gate, **settings})


def _score(task: Task, spec: StudySpec, sessions, work: Path, settings):
    import dataclasses

    from brain.config import BrainConfig
    from brain.live.replay import replay
    from recording import open_session
    from recording.score import score_session

    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="replay-", dir=work))  # fresh: a retried task never appends to a half log
    try:
        out = replay(task.session, settings, speed=None, out=scratch / "session", progress=False,
                     model=_model(task.models[0], spec.device))
        session = open_session(out)
        score = score_session(session, BrainConfig.of_session(session.meta).sonify)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the replay is a step, the rows are the result
    rows = _rows(task, spec)
    for f in dataclasses.fields(score):
        value = getattr(score, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
            rows.add(f.name, value)
    return rows


def _neuron_stats(task: Task, spec: StudySpec, sessions, work: Path, settings):
    import torch

    from brain.neuron_stats import load_stats
    from brain.stream import read_session, session_events
    from recording.log import read_session as read_log

    model = _model(task.models[0], spec.device)
    stats = load_stats(model, settings.brain.stats_dir)
    results = read_session(model, session_events(read_log(task.session)),
                           context_tokens=min(settings.brain.context_tokens, model.n_ctx), stats=stats)
    rows = _rows(task, spec, events=len(results))
    if not results:
        return rows
    acts = torch.stack([r.acts for r in results])  # [events, layers, d_mlp]
    site = NEURON_SITE
    if settings.brain.units == "features":
        features = _features(model)
        acts = torch.stack([features.dictionary[layer].encode(acts[:, layer]) for layer in range(acts.shape[1])], 1)
        stats, site = features.stats, FEATURE_SITE
    norm = acts / stats.scale if stats is not None else acts  # a dead feature's scale is infinite: never fires
    rate, mean = (norm >= spec.gate).float().mean(0), norm.mean(0)
    for layer in range(norm.shape[1]):
        for n in range(norm.shape[2]):
            rows.add("firing_rate", float(rate[layer, n]), site=site, layer=layer, neuron=n)
            rows.add("mean_normalized", float(mean[layer, n]), site=site, layer=layer, neuron=n)
    return rows


def _features(model):
    """The model's dictionary, loaded once per worker (a clear error naming the training command if it has none)."""
    from brain.units.features import load_features

    key = f"features:{model.directory or model.name}"
    if key not in _MODELS:
        _MODELS[key] = load_features(model)
    return _MODELS[key]


def _layer_skip(task: Task, spec: StudySpec, sessions, work: Path, settings):
    from brain.corruption import LayerCorruption
    from brain.science.corruption_effects import corrupted_forward, session_loss
    from brain.stream import session_text
    from recording.log import read_session as read_log

    model = _model(task.models[0], spec.device)
    text = session_text(read_log(task.session)).text
    clean = session_loss(model, text, corrupted_forward(model, LayerCorruption.identity(model.n_layers)))
    rows = _rows(task, spec, clean_loss=round(clean, 6))
    for layer in range(model.n_layers):
        plan = LayerCorruption.parse([f"skip={layer}"], model.n_layers)
        rows.add("loss_change", session_loss(model, text, corrupted_forward(model, plan)) - clean, site="block",
                 layer=layer)
    return rows


def _match(task: Task, spec: StudySpec, sessions, work: Path, settings):
    from brain.science.experiments import match_neurons
    from brain.stream import session_text
    from recording.log import read_session as read_log

    a, b = (_model(m, spec.device) for m in task.models)
    texts = [session_text(read_log(s)).text for s in sessions]
    rows = _rows(task, spec, model_b=task.models[1], sessions=len(sessions))
    features = settings.brain.units == "features"
    dictionaries = (_features(a).dictionary, _features(b).dictionary) if features else None
    for m in match_neurons(a, b, texts, dictionaries=dictionaries):
        layer, n = NeuronId.parse(m.a)
        rows.add("best_match_r", m.r, site=FEATURE_SITE if features else NEURON_SITE, layer=layer, neuron=n,
                 token=m.b)
    return rows


MEASURE_FUNCTIONS: dict[str, Callable] = {"score": _score, "neuron_stats": _neuron_stats,
                                          "layer_skip": _layer_skip, "match": _match}


# -- running a study ------------------------------------------------------------------------------------------------
@dataclass
class StudyRun:
    out: Path
    planned: int = 0
    skipped: int = 0
    """Finished in an earlier run: not recomputed."""
    done: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def result_path(out: Path, task: Task, task_id: str) -> Path:
    return out / f"measure={task.measure}" / f"{task_id}.parquet"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # a study stopped mid-write leaves no half file that a rerun would take as finished


def _record_error(out: Path, task: Task, task_id: str, error: str) -> None:
    path = out / "errors" / f"{task_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"measure": task.measure, "session": task.session, "models": list(task.models),
                                "error": error}, indent=1))


def run_study(spec_path: str | Path, out: str | Path, settings, *, address: str | None = None, serial: bool = False,
              workers: int | None = None, progress: bool = True) -> StudyRun:
    """Run (or resume) a study: every task not finished before, on Ray (``serial``: here, one after another).
    ``settings``: the configuration replays use (the band, the brain's context and statistics folder)."""
    spec, sessions = load_spec(spec_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    (out / "spec.json").write_text(json.dumps({"spec": msgspec.to_builtins(spec), "sessions": sessions}, indent=1))
    tasks = plan(spec, sessions)
    run = StudyRun(out, planned=len(tasks))
    settings_key = hashlib.sha1(json.dumps(msgspec.to_builtins(settings.brain), sort_keys=True).encode()).hexdigest()
    todo = []
    for task in tasks:
        tid = task.id(spec, tuple(sessions), settings_key)
        if result_path(out, task, tid).exists():
            run.skipped += 1
        else:
            todo.append((task, tid))
    start = time.monotonic()
    view = _ProgressView(run, len(todo)) if progress else None
    try:
        if serial:
            _run_serial(todo, spec, tuple(sessions), work, settings, run, view)
        else:
            _run_ray(todo, spec, tuple(sessions), work, settings, run, view, address, workers)
    finally:
        if view:
            view.close()
    run.seconds = time.monotonic() - start
    return run


def _finish(run: StudyRun, task: Task, tid: str, data: bytes | None, error: str | None, view) -> None:
    if data is not None:
        _write(result_path(run.out, task, tid), data)
        (run.out / "errors" / f"{tid}.json").unlink(missing_ok=True)
        run.done += 1
    else:
        _record_error(run.out, task, tid, error or "unknown error")
        run.failed.append(tid)
    if view:
        view.update()


def _run_serial(todo, spec, sessions, work, settings, run, view) -> None:
    for task, tid in todo:
        error = None
        for _attempt in range(spec.retries + 1):
            try:
                data = run_task(task, spec, sessions, str(work), settings)
                break
            except Exception:  # recorded, and the study goes on
                data, error = None, traceback.format_exc(limit=8)
        _finish(run, task, tid, data, error, view)


def _run_ray(todo, spec, sessions, work, settings, run, view, address, workers) -> None:
    ray = require_ray()
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
        context = ray.init(log_to_driver=False, **kwargs)
        url = getattr(context, "dashboard_url", None)
        if url and view:
            view.say(f"Ray dashboard: http://{url}")
    remote = ray.remote(num_cpus=1, num_gpus=spec.num_gpus, max_retries=spec.retries,
                        retry_exceptions=True)(run_task)
    spec_ref, sessions_ref, settings_ref = ray.put(spec), ray.put(sessions), ray.put(settings)
    pending = {remote.remote(task, spec_ref, sessions_ref, str(work), settings_ref): (task, tid) for task, tid in todo}
    if view:
        view.running = min(len(pending), int(ray.available_resources().get("CPU", 1)) or 1)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        task, tid = pending.pop(ready[0])
        try:
            data, error = ray.get(ready[0]), None
        except Exception as exc:  # the task failed every try (or its worker kept dying): recorded, the rest goes on
            data, error = None, _ray_error(exc)
        if view:
            view.running = min(view.running, len(pending))
        _finish(run, task, tid, data, error, view)


def _ray_error(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    return f"{type(cause or exc).__name__}: {cause or exc}"[:4000]


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("neurojam study runs its tasks on Ray, which is not installed here: "
                          "pip install 'neurojam[study]' (or run with --serial, one task after another).") from None
    return ray


class _ProgressView:
    """Tasks done / running / failed and the time left, in the terminal."""

    def __init__(self, run: StudyRun, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.run, self.running = run, 0
        self.progress = Progress(TextColumn("study"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeRemainingColumn())
        self.progress.start()
        self.bar = self.progress.add_task("tasks", total=total, status=self._status())
        if run.skipped:
            self.say(f"{run.skipped} of {run.planned} tasks finished in an earlier run: not recomputed")

    def _status(self) -> str:
        return f"running {self.running}, failed {len(self.run.failed)}"

    def say(self, line: str) -> None:
        self.progress.console.print(line)

    def update(self) -> None:
        self.progress.update(self.bar, completed=self.run.done + len(self.run.failed), status=self._status())

    def close(self) -> None:
        self.progress.stop()


# -- reading a study ------------------------------------------------------------------------------------------------
def read_results(out: str | Path, measure: str | None = None):
    """The study's rows as one pandas DataFrame (``measure``: one partition)."""
    import pyarrow.dataset as ds

    out = Path(out)
    files = sorted((out / f"measure={measure}").glob("*.parquet")) if measure else sorted(out.glob("measure=*/*.parquet"))
    if not files:
        import pandas as pd

        return pd.DataFrame()
    return ds.dataset([str(f) for f in files], format="parquet").to_table().to_pandas()


def errors(out: str | Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "errors").glob("*.json"))]


def headline_tables(out: str | Path) -> dict[str, list[list]]:
    """What ``neurojam study show`` prints: per-neuron firing across sessions, score per model, layer-skip damage,
    cross-model matches."""
    tables: dict[str, list[list]] = {}
    stats = read_results(out, "neuron_stats")
    if len(stats):
        fr = stats[stats.metric == "firing_rate"]
        keys = ["model", "site", "layer", "neuron"]
        g = fr.groupby(keys).value
        agg = g.agg(["mean", "std"]).join((fr.assign(fired=fr.value > 0).groupby(keys)
                                            .fired.mean().rename("sessions_fired")))
        top = agg.sort_values("mean", ascending=False).groupby(level=["model", "site"]).head(8).reset_index()
        tables["firing rate across sessions (top neurons per model)"] = [
            [r.model, f"{r.layer}.{r.neuron}" + (" (feature)" if r.site == FEATURE_SITE else ""), f"{r['mean']:.2%}",
             f"{(r['std'] if r['std'] == r['std'] else 0):.2%}", f"{r.sessions_fired:.0%}"] for _, r in top.iterrows()]
    score = read_results(out, "score")
    if len(score):
        piv = score.groupby(["model", "metric"]).value.mean().unstack()
        keep = [c for c in ("key_fit", "harmony", "clashes_per_min", "response_rho", "prediction_hits", "brain_notes")
                if c in piv.columns]
        counts = score.groupby("model").session.nunique()
        tables["score per model (mean over sessions)"] = [
            [model, str(counts[model]), *(f"{piv.loc[model, c]:.3g}" for c in keep)] for model in piv.index]
        tables["score per model (mean over sessions)"].insert(0, ["model", "sessions", *keep])
    skip = read_results(out, "layer_skip")
    if len(skip):
        g = skip.groupby(["model", "layer"]).value.agg(["mean", "max"]).reset_index()
        tables["layer-skip damage (next-note loss change)"] = [
            [r.model, str(r.layer), f"{r['mean']:+.3f}", f"{r['max']:+.3f}"] for _, r in g.iterrows()]
    match = read_results(out, "match")
    if len(match):
        rows = []
        for (a, settings, site), grp in match.groupby(["model", "settings", "site"]):
            b = json.loads(settings).get("model_b", "?")
            units = "features" if site == FEATURE_SITE else "neurons"
            rows.append([a, b, f"{len(grp)} {units}", f"{(grp.value >= 0.9).mean():.1%}", f"{grp.value.median():.2f}"])
        tables["cross-model match (best Pearson r of each neuron of A in B)"] = rows
    return tables


def write_plots(out: str | Path) -> list[Path]:
    """A few pictures beside the tables: firing rates across sessions, and layer-skip damage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out)
    written = []
    stats = read_results(out, "neuron_stats")
    if len(stats):
        fr = stats[stats.metric == "firing_rate"].assign(nid=lambda d: d.layer.astype(str) + "." + d.neuron.astype(str))
        model = fr.model.iloc[0]
        fr = fr[fr.model == model]
        top = fr.groupby("nid").value.mean().nlargest(20).index
        grid = fr[fr.nid.isin(top)].pivot_table(index="nid", columns="session", values="value").reindex(top)
        fig, ax = plt.subplots(figsize=(10, 5))
        im = ax.imshow(grid.values * 100, aspect="auto", cmap="magma")
        ax.set_yticks(range(len(top)), list(top), fontsize=7)
        ax.set_xlabel(f"sessions ({grid.shape[1]})")
        ax.set_title(f"{model}: firing rate of its 20 most active neurons in each session (%)")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        written.append(out / "plots" / "firing-rates.png")
        written[-1].parent.mkdir(exist_ok=True)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    skip = read_results(out, "layer_skip")
    if len(skip):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for model, grp in skip.groupby("model"):
            g = grp.groupby("layer").value
            ax.errorbar(g.mean().index, g.mean().values, yerr=g.std().fillna(0).values, marker="o", label=model,
                        capsize=3)
        ax.set_xlabel("layer skipped")
        ax.set_ylabel("next-note loss change")
        ax.set_xticks(np.arange(skip.layer.max() + 1))
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / "plots" / "layer-skip.png")
        written[-1].parent.mkdir(exist_ok=True)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def comparable(df) -> "pandas.DataFrame":
    """A study's rows without the columns that say when they were made (two runs of one study compare equal)."""
    cols = [c for c in df.columns if c != "created_utc"]
    return df[cols].sort_values(cols).reset_index(drop=True)
