"""The evaluation protocol (:mod:`.protocol`) and its feature networks (:mod:`.features`:
the shipped classifier, :mod:`.classifier`, or the FID Inception, :mod:`.inception`)."""
