"""Running a sweep: what was asked, the plan, the runner, the run directory and its manifest."""
