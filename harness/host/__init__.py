"""The host's own settings a run changes: THP knobs, huge-page pools, hugetlbfs mounts.

Every change is journaled before it is made and undone on every ending; what a killed
harness left behind is undone at the next start (:func:`journal.recover_leftovers`).
Above the vm layer (it prepares what a guest's backing needs), below experiment.
"""

from harness.host.journal import recover_leftovers

__all__ = ["recover_leftovers"]
