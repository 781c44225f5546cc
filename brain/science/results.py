"""Experiment results as rows of one long table, so many runs concatenate into one dataset.

Every experiment (ablate, attribute, test, match, patch, corrupt) can write ``--out results.parquet``: one row
per measured unit (neuron, layer, position, ...) and metric, with the session, the model and the settings.
The schema is the same for every experiment, so ``pandas.read_parquet("results/")`` or DuckDB's
``read_parquet('results/*.parquet')`` reads a month of runs as one table (docs/experiments.md).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import SessionError

COLUMNS = ("experiment", "session", "model", "settings", "site", "layer", "neuron", "position", "token",
           "metric", "value", "created_utc")


@dataclass
class ResultRows:
    """Rows of one experiment run: the run's identity once, the measurements as :meth:`add` calls."""

    experiment: str
    model: str
    session: str = ""
    settings: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    def add(self, metric: str, value: float, *, site: str = "", layer: int = -1, neuron: int = -1,
            position: int = -1, token: str = "") -> None:
        self.rows.append({"site": site, "layer": int(layer), "neuron": int(neuron), "position": int(position),
                          "token": token, "metric": metric, "value": float(value)})

    def table(self):
        import pyarrow as pa

        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        settings = json.dumps(self.settings, sort_keys=True, default=str)
        full = [{"experiment": self.experiment, "session": self.session, "model": self.model, "settings": settings,
                 **r, "created_utc": now} for r in self.rows]
        schema = pa.schema([("experiment", pa.string()), ("session", pa.string()), ("model", pa.string()),
                            ("settings", pa.string()), ("site", pa.string()), ("layer", pa.int32()),
                            ("neuron", pa.int32()), ("position", pa.int32()), ("token", pa.string()),
                            ("metric", pa.string()), ("value", pa.float64()), ("created_utc", pa.string())])
        return pa.Table.from_pylist(full, schema=schema)

    def write(self, path: str | Path) -> Path:
        """Write (or append to) a Parquet file; a folder gets a new file per run."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        table = self.table()
        if path.is_dir() or not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            path = path / f"{self.experiment}-{stamp}.parquet"
        elif path.suffix != ".parquet":
            raise SessionError(f"--out {path}: results are written as Parquet; name the file *.parquet or a folder.")
        elif path.exists():
            try:
                table = pa.concat_tables([pq.read_table(path), table])
            except Exception as exc:  # a file that is not ours: never overwrite it
                raise SessionError(f"--out {path}: exists and is not a results table ({exc}); pick another name.") \
                    from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return path
