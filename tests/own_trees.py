"""Real "user's trees" for the tests and benchmarks of issues 19 and 27 (kernel and QEMU built
from source): Debian's Linux and QEMU sources as git trees, the stack's RFC port on top, in the
shared cache.

The code lives in :mod:`harness.artifacts.git_trees` (``balloon-harness upstream-trees`` clones
the same trees); this module keeps the names the tests and benchmarks import.
"""

from __future__ import annotations

from harness.artifacts.git_trees import (  # noqa: F401
    DEBIAN_IGNORE,
    GIT,
    _git_repo,
    _patches,
    cached_linux_tree,
    cached_qemu_source,
    cut_debian_ignore,
    git,
    git_tree_of_linux_source,
    linux_tree,
    qemu_tree,
)
