"""Maintainer scripts, run with ``python -m``: rebuild the zoo (:mod:`.build_zoo`) and the
evaluation classifier (:mod:`.train_classifier`)."""
