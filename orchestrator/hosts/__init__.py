"""The machines a sweep runs on: the hosts.toml inventory, host checks, doctor, and the GPUs NVML sees."""
