"""Real parts the tests and benchmarks start on this machine and stop by pid: extra Docker engines (engines.py)
and a Slurm cluster (slurmcluster.py). Neither a test module nor part of the product."""
