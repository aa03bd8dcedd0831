"""The tuning stage: search spaces (`space`, no Ray), the searcher and scheduler (`searcher`), how a trial
ended and its folder name (`trials`), Ray's private behaviour (`internals`, the only module that touches it), the Tune
trainables (`trainables`), one regime's search on a Ray cluster (`runner`) and its best trial (`best`)."""
