"""The stage runners, one module per stage: :mod:`.features`, :mod:`.proposals`, :mod:`.labels`,
:mod:`.localize` (train, predict, ask one video), on the shared per-video loop (:mod:`.per_video`)."""
