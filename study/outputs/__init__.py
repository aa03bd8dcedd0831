"""The results stage: where a study lives (`storage`), its record and summary (`record`), and each regime's
best trial scored once on test (`holdout`)."""
