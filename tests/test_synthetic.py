"""The synthetic results folders (tests/synthetic.py) are what the harness's own store writes:
make_results writes the combined frames from the runs' frames in hand instead of reading every
run's Parquet back (ResultsStore.combine), and here a copy of each folder combined by the store
must give the same files, byte for byte (CSV) and table and schema (Parquet)."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
from synthetic import ArmSpec, make_results

from harness.results import ResultsStore
from harness.results.layout import SAMPLES, SUMMARY


@pytest.mark.parametrize("kw", [
    dict(reps=2, failed=("baseline-r1",), missing=("thp-order-r2",),
         reference={"baseline": {"host_ahp_before_kib": 1}}),
    dict(reps=3, fast=True, jobs=None,
         arms={"a": ArmSpec(ratio=2.0), "b": ArmSpec(shrink=0.5), "c": ArmSpec(qemu="x")}),
], ids=["failed-missing-reference", "fast-three-arms"])
def test_a_synthetic_folder_combines_as_the_store_does(tmp_path, kw):
    ours = make_results(tmp_path / "ours", seed=7, **kw)
    theirs = tmp_path / "theirs"
    shutil.copytree(ours, theirs)
    ResultsStore(theirs).combine()
    for stem in (SAMPLES, SUMMARY):
        assert (ours / f"{stem}.csv").read_bytes() == (theirs / f"{stem}.csv").read_bytes(), stem
        a, b = pq.read_table(ours / f"{stem}.parquet"), pq.read_table(theirs / f"{stem}.parquet")
        assert a.num_rows > 0 and a.schema.equals(b.schema, check_metadata=True) and a.equals(b), stem
