"""Nightly history, its storage: every finished results folder appended to one Parquet dataset.

Why a Hive-partitioned Parquet dataset: it is plain files (no database server on a
bare-metal runner), appending is writing one new file, and pandas, pyarrow and DuckDB
read it as one table filtered by folder names::

    history/summary/scenario=<name>/host=<hostname>/date=<YYYY-MM-DD>/<results-folder>.parquet
    history/metadata/scenario=<name>/host=<hostname>/date=<YYYY-MM-DD>/<results-folder>.json

    pd.read_parquet("history/summary")                       # every night, every host
    duckdb: SELECT * FROM read_parquet('history/summary/**/*.parquet', hive_partitioning=1)

Each file is written under a temporary name (a dot file, which dataset readers skip) and
renamed, so a reader never sees half a file and a crash leaves no broken one. The file's
name is the results folder's, in the partition of its own date and host, so appending
the same folder twice replaces it instead of counting it twice.

What the nights say (trends, change points, tonight against the last nights) is
:mod:`harness.analysis.history`; its text and plots are :mod:`harness.analysis.history_render`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from harness.errors import HarnessError
from harness.results import atomic_write
from harness.results.folder import as_dict, as_list, open_folder
from harness.results.identity import fingerprint
from harness.results.metrics import SUMMARY_COLUMNS

PARTITIONS = ("scenario", "host", "date")

EXTRA_COLUMNS = ["folder", "created", "harness_revision", "scenario_sha256", "build", "run_uid"]

_STRING_COLUMNS = {"run_id", "arm", "step", "kind", "outcome", "accel", *EXTRA_COLUMNS}

def _schema():
    import pyarrow as pa
    fields = []
    for c in [*SUMMARY_COLUMNS, *EXTRA_COLUMNS]:
        if c in _STRING_COLUMNS:
            fields.append(pa.field(c, pa.string()))
        elif c == "rep":
            fields.append(pa.field(c, pa.int64()))
        elif c == "reached":
            fields.append(pa.field(c, pa.bool_()))
        else:
            fields.append(pa.field(c, pa.float64()))
    return pa.schema(fields)

def _partitioning():
    import pyarrow as pa
    import pyarrow.dataset as ds
    return ds.partitioning(pa.schema([(p, pa.string()) for p in PARTITIONS]), flavor="hive")

def safe_name(value: str) -> str:
    """A partition value: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value) or "unknown"

def check_history_dir(history_dir: str | Path, create: bool = False) -> bool:
    """True when ``history_dir`` holds a history; False when absent or empty.

    Refuses a folder that exists, is not empty and has no ``summary/`` dataset: writing
    into someone's home or a results folder by a wrong argument must fail loudly.
    """
    h = Path(history_dir)
    if not h.exists():
        if create:
            h.mkdir(parents=True)
        return False
    if not h.is_dir():
        raise HarnessError(f"{h} is not a history folder (it is a file)")
    if (h / "summary").is_dir():
        return any((h / "summary").rglob("*.parquet"))
    if any(h.iterdir()):
        raise HarnessError(f"{h} is not a history folder: it is not empty and holds no summary/ dataset "
                           f"(refusing to use it; give an empty or new folder, or an existing history)")
    return False


# --- appending ----------------------------------------------------------------------------

def _date_of(metadata: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    created = metadata.get("created")
    if isinstance(created, str) and re.match(r"\d{4}-\d{2}-\d{2}", created):
        return created[:10]
    started = [float(r["started"]) for r in runs if isinstance(r.get("started"), (int, float))]
    if started:
        return dt.datetime.fromtimestamp(min(started)).strftime("%Y-%m-%d")
    return dt.date.today().isoformat()

def _host_of(metadata: dict[str, Any]) -> str:
    """The host partition: the recorded hostname, the shards' hosts joined by +, else this host."""
    def name(meta: Any) -> Optional[str]:
        host = as_dict(as_dict(meta).get("host"))
        return host["hostname"] if isinstance(host.get("hostname"), str) else None

    names = sorted({n for n in (name(s) for s in as_list(metadata.get("shards"))) if n})
    if names:
        return "+".join(names)
    return name(metadata) or socket.gethostname()

def history_frame(summary: pd.DataFrame, extra: dict[str, str]) -> pd.DataFrame:
    """The summary rows in the history's fixed column types (old folders: missing columns null)."""
    df = pd.DataFrame({c: summary[c] if c in summary.columns else None for c in SUMMARY_COLUMNS},
                      index=summary.index).reset_index(drop=True)
    for c in SUMMARY_COLUMNS:
        if c == "reached":
            df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                              else bool(v)).astype(object)
        elif c == "rep":
            df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0).astype("int64")
        elif c in _STRING_COLUMNS:
            df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                              else str(v)).astype(object)
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    # the night's columns joined at once (one insert per column fragments the frame: with the
    # fleet's and the backings' columns pandas warned on every append)
    return pd.concat([df, pd.DataFrame({c: [extra.get(c)] * len(df) for c in EXTRA_COLUMNS}, index=df.index)],
                     axis=1)

@dataclass
class Appended:
    summary: Path
    metadata: Path
    rows: int

def append_history(out: str | Path, history_dir: str | Path, date: Optional[str] = None) -> Optional[Appended]:
    """Append finished results folder ``out`` to ``history_dir``; None when it has no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_history_dir(history_dir, create=True)
    history_dir = Path(history_dir)
    folder = open_folder(out)
    if folder.summary.empty:
        return None
    meta = folder.metadata
    scen_text = folder.scenario.text
    fp = fingerprint(meta, folder.summary, scen_text)
    name = folder.path.resolve().name
    extra = {"folder": name, "created": str(meta.get("created", "")),
             "harness_revision": str(meta.get("harness_revision", "")),
             "scenario_sha256": fp.get("scenario", ""),
             "build": json.dumps({k: v for k, v in fp.items() if k != "accelerator"}, sort_keys=True)}
    part = Path(f"scenario={safe_name(folder.scenario.name)}", f"host={safe_name(_host_of(meta))}",
                f"date={date or _date_of(meta, folder.runs)}")
    frame = history_frame(folder.summary, extra)
    uids = {str(r.get("run_id")): str(r["run_uid"]) for r in folder.runs if r.get("run_uid")}
    frame["run_uid"] = frame["run_id"].map(lambda r: uids.get(str(r))).astype(object)
    table = pa.Table.from_pandas(frame, schema=_schema(), preserve_index=False)
    summary_path = history_dir / "summary" / part / f"{name}.parquet"
    meta_path = history_dir / "metadata" / part / f"{name}.json"
    atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"))
    atomic_write(summary_path, lambda p: pq.write_table(table, p))
    return Appended(summary_path, meta_path, table.num_rows)


# --- reading ------------------------------------------------------------------------------

def load_history(history_dir: str | Path, scenario: Optional[str] = None,
                 columns: Optional[list[str]] = None) -> pd.DataFrame:
    """Every stored summary row (with scenario, host and date columns), optionally one
    scenario and only some ``columns`` (reading fewer columns is faster)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    names = [*SUMMARY_COLUMNS, *EXTRA_COLUMNS, *PARTITIONS]
    if columns is not None:
        names = [c for c in names if c in set(columns) | set(PARTITIONS)]
    if not check_history_dir(history_dir):
        return pd.DataFrame(columns=names)
    schema = pa.schema([*_schema(), *[pa.field(p, pa.string()) for p in PARTITIONS]])
    dataset = ds.dataset(Path(history_dir) / "summary", format="parquet", partitioning=_partitioning(),
                         schema=schema)
    filt = (ds.field("scenario") == safe_name(scenario)) if scenario else None
    # Many small files (one per night): one thread reads them faster than a pool on small hosts.
    table = dataset.to_table(columns=names, filter=filt, use_threads=False)
    df = table.to_pandas()
    for c in df.columns:  # plain object strings, whatever pandas' default string dtype
        if c in _STRING_COLUMNS or c in PARTITIONS:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df

def one_scenario(hist: pd.DataFrame, history_dir: Path, scenario: Optional[str]) -> str:
    names = sorted(hist["scenario"].dropna().unique()) if not hist.empty else []
    if scenario:
        if not names:
            raise HarnessError(f"{history_dir}: no results of scenario {scenario!r} in the history")
        return safe_name(scenario)
    if not names:
        raise HarnessError(f"{history_dir}: the history holds no results yet")
    if len(names) > 1:
        raise HarnessError(f"{history_dir} holds several scenarios ({', '.join(names)}): pass --scenario")
    return names[0]

def unique_runs(hist: pd.DataFrame) -> pd.DataFrame:
    """One row per run and step: a run appended twice (a shard, then the merged folder it
    went into) counts once. Runs are told apart by ``run_uid`` (their run.json's id) where
    the history has it, else by folder, run id and date."""
    if hist.empty:
        return hist
    uid = hist["run_uid"] if "run_uid" in hist.columns else pd.Series(None, index=hist.index, dtype=object)
    fallback = hist["folder"].astype(str) + "/" + hist["run_id"].astype(str) + "@" + hist["date"].astype(str)
    key = uid.where(uid.notna() & (uid.astype(str) != ""), fallback)
    return hist.assign(_run=key).drop_duplicates(["_run", "step"], keep="last").drop(columns="_run")
