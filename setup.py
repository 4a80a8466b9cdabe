"""Only what pyproject.toml cannot say: the package list is found rather than written out.

Every package under harness/ (find_packages), plus harness._data: the data folders beside
harness/ (scenarios, patches, image sources, stacks.lock), mapped into the wheel by
[tool.setuptools.package-dir] in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["harness", "harness.*"]), "harness._data"])
