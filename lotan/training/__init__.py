"""Training: the epoch loop shared by ``fit`` and ``fit_many`` (:mod:`.loop`), one model in
training (:mod:`.trainer`), what it reports (:mod:`.records`), checkpoints and resuming
(:mod:`.checkpoint`) and the progress display (:mod:`.progress`). Import from the modules;
this package imports none of them, so none of them depends on another through it."""
