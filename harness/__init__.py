"""balloon-harness: boot real QEMU guests, move their virtio balloon, measure host THP.

Data flows one way through the subpackages:
artifacts (sources, patches, cache) -> vm (QEMU process, QMP, console) -> guest (SSH)
-> probes (host and guest /proc) -> experiment -> results -> report -> cli.
"""

__version__ = "0.1.0"
