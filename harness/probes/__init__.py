"""Measurements: host /proc (this module's host.py) and the guest's, via SSH."""
