"""The metrics stage: text scores (`scoring`, sacrebleu only) and a model on a split (`generation`)."""
