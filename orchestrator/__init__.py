"""gdbench orchestrator: runs the solver images across the sweep, merges, reports and compares results."""
