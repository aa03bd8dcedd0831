"""The training stage: one loop for every regime (`loop`), its optimizer step (`step`), checkpoints, and
the offline upstream's span-corruption pretraining (`upstream`)."""
