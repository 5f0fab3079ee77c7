"""Where containers run: the Backend protocol, the registry of kinds (docker, local, slurm), one folder a kind."""
