"""The ``io.gdbench.*`` label keys, spelled once: on the containers gdbench starts and on the images it runs.

Container labels let ``gdbench clean`` / ``doctor`` find what a run left behind; image labels carry the pinned
versions the image was built with (set by the Dockerfiles, read here for provenance and the CUDA check).
"""

from __future__ import annotations

PREFIX = "io.gdbench."

#: On every container gdbench starts; a user's ``--label`` may not set them.
MANAGED = PREFIX + "managed"
RUN = PREFIX + "run"
CONTAINER = PREFIX + "container"
RESERVED = (MANAGED, RUN, CONTAINER)

#: On every gdbench image (written by images/*/Dockerfile).
FRAMEWORK = PREFIX + "framework"
FRAMEWORK_VERSION = PREFIX + "framework.version"
FLAVOUR = PREFIX + "flavour"
CUDA_VERSION = PREFIX + "cuda.version"
#: ``cuda13`` for a build declared with ``images add --cuda 13``; empty for a flavour's default build.
CUDA_BUILD = PREFIX + "cuda.build"
#: The extra package index the lock resolved against (``images add --index-url``); empty for PyPI alone.
INDEX_URL = PREFIX + "index_url"
PYTHON_VERSION = PREFIX + "python.version"
IMAGE = (FRAMEWORK, FRAMEWORK_VERSION, FLAVOUR, CUDA_VERSION, CUDA_BUILD, INDEX_URL, PYTHON_VERSION)
