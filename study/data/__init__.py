"""The data stage: pairs (load, clean, split), the tokenizer, tokenizing, batching, the prepared splits.

Nothing here imports Ray or trains a model. `sample/` is the bundled English→French grammar corpus;
`span_corruption` is T5's pretraining objective as a transformation of token sequences.
"""
