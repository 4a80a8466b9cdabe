"""Where the project's data folders are, in a checkout and in an installed wheel.

The repository keeps ``scenarios/``, ``images/``, ``guest-kernel-patches/`` and
``qemu-patches/`` beside ``harness/`` (the layout users and patch reviewers know).
The wheel maps them into the package at build time as ``harness/_data/<folder>``
(see ``[tool.setuptools]`` in pyproject.toml), so ``pip install .`` into any
virtualenv gives a working ``build`` and ``reproduce`` from any directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FOLDERS = ("scenarios", "images", "guest-kernel-patches", "qemu-patches")
CHECKOUT = Path(__file__).resolve().parents[1]


def data_dir(name: str) -> Path:
    """The folder ``name`` (one of :data:`FOLDERS`): the checkout's when running from one
    (an editable install sees edits at once), else the installed package's copy."""
    if name not in FOLDERS:
        raise KeyError(f"no data folder {name!r}; known: {', '.join(FOLDERS)}")
    local = CHECKOUT / name
    if local.is_dir():
        return local
    packaged = Path(str(resources.files("harness") / "_data" / name))
    if not packaged.is_dir():
        raise FileNotFoundError(f"{name}/ is neither beside the harness package ({local}) nor inside "
                                f"it ({packaged}): a broken installation; reinstall with `pip install .`")
    return packaged


def scenario_path(name: str) -> Path:
    """A shipped scenario by file name (``rfc-v1.toml``) or stem (``rfc-v1``)."""
    filename = name if name.endswith(".toml") else f"{name}.toml"
    return data_dir("scenarios") / filename
