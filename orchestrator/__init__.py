"""The orchestrator: user intent (CLI flags, a search) into runs, and all I/O.

Subpackages are layered; a module imports only from its own layer or below (import-linter
holds this, see ``[tool.importlinter]`` in pyproject.toml)::

    cli | tools            the command line; maintainer scripts
    jobs                   job submission to a remote Ray cluster
    search                 Ray Tune searches
    pipelines              transfer, mine, pretrain, evaluate, demo runs
    report | evaluation    report.html and plots; the evaluation protocol
    artifacts              run directories, records, checkpoints, zoo, loaders
    data                   target specs, datasets, image sets
    storage                local and s3:// files, atomic writes, tables
    errors | progress | cluster
"""
