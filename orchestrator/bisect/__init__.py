"""``gdbench bisect``: the first release of a framework whose cell got slower beyond the noise."""
