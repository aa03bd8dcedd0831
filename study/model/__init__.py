"""The model stage: weights (random or pretrained), the regimes (which parameters train), the device."""
