"""``report.html`` (:mod:`.html`) and every plot ganlode draws (:mod:`.plots`)."""
