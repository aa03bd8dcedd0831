"""t5-regime-study: what does pre-training buy a T5 translation model, and which part is worth training?"""

__version__ = "0.1.0"
