"""The runs behind the commands: each checks every input, builds, loops, and writes a run directory.

- :mod:`.transfer`: one source, one method (``ganlode transfer``, Tune trials, the demo);
- :mod:`.mine` (with :mod:`.mine_engine` and :mod:`.mine_outputs`): several sources (``ganlode mine``);
- :mod:`.pretrain`: a source GAN from scratch, in-process or on Ray Train;
- :mod:`.evaluate`: scoring a stored model again (``ganlode eval``);
- :mod:`.demo`: the main job.
"""
