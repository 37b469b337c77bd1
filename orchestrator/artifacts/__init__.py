"""What runs leave behind: run directories and their records, checkpoints, the zoo, and loaders.

- :mod:`.rundir`: the run-directory layout (one constant per file name) and its metrics log;
- :mod:`.records`: ``RunRecord`` and ``ModelRecord``, the typed ``config.json`` of each;
- :mod:`.checkpoint`: safetensors checkpoints, written atomically, never unpickled;
- :mod:`.zoo`: the shipped source GANs (``zoo:NAME``);
- :mod:`.loaders` and :mod:`.sampling`: any checkpoint or run as a sampler.
"""
