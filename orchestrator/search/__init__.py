"""``ganlode tune``: Ray Tune searches over transfer and mining settings.

:mod:`.space` (search spaces) -> :mod:`.spec` (what defines a search, checked up front) ->
:mod:`.state` (a trial's exact training state) -> :mod:`.trials` (the trainables and what they
reserve) -> :mod:`.results` (the tables, the best run, the plot) -> :mod:`.run` (the search).
"""
