"""Everything a run boots, built into the cache or fetched from Debian.

Fetching: ``apt.py`` (a private apt per guest stack), ``debian.py`` (unpacking ``.deb``
files), ``stacks.py`` (the stacks, their pins and archives). Building: ``build.py``
(``build_all``, what ``balloon-harness build`` runs, and the manifest), with one module
per artifact (``kernel.py``, ``module.py``, ``initramfs.py``, ``qemu.py``, ``kernel_tree.py``).
"""
