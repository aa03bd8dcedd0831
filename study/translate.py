"""Translate English with a study's exported model.

    python -m study.translate results/<study> "The cat sees the dog." "I am here."
    python -m study.translate results/<study> --regime full --input sentences.txt   # one sentence a line

Prints one French line per English sentence, in order (a blank line stays blank). The model is
`<study>/<regime>/model/` (default: the regime with the best validation BLEU; test never chooses), with the study's task prefix and
text normalisation, decoded exactly as `from_pretrained` + `generate` decodes that folder: by its
generation_config.json (see study.outputs.export for how that differs from the study's own decoding).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.cli import ArgumentParser, run_cli
from study.config import StudyError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.translate", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help="the study folder, results/<study name>")
    p.add_argument("text", nargs="*", help="English sentences to translate")
    p.add_argument("--regime", help="whose exported model to use (default: the best by validation BLEU, best.json's best_val_bleu)")
    p.add_argument("--input", type=Path, help="a UTF-8 file of English sentences, one a line")
    p.add_argument("--batch-size", type=int, default=32, help="sentences decoded at once")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    return p


def read_sentences(args: argparse.Namespace) -> list[str]:
    """The sentences to translate: the command line's, then the --input file's lines (blank lines kept)."""
    if args.text and args.input:
        raise StudyError("give sentences on the command line or --input FILE, not both")
    if args.input is None:
        if not args.text:
            raise StudyError("nothing to translate: pass sentences, or --input FILE (one sentence a line)")
        return list(args.text)
    if not args.input.is_file():
        raise StudyError(f"--input {args.input}: no such file; pass a UTF-8 text file, one sentence a line")
    try:
        return args.input.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise StudyError(f"--input {args.input} is not UTF-8 text; re-save it as UTF-8") from err


def translate_texts(study_dir: Path, regime: str, texts: list[str], device: str = "cpu",
                    batch_size: int = 32) -> list[str]:
    """French for each English text (an empty line stays empty), with the regime's exported model.

    Decoded as anyone loading the folder decodes: `model.generate` with nothing but the inputs, so its
    generation_config.json (the study's beams, max_target_tokens) decides. Batches are sorted by length,
    so that little of one is padding."""
    import torch

    from study.data.pairs import normalize_text
    from study.model.device import pick_device
    from study.outputs.export import load_exported, study_config

    prefix = study_config(study_dir, regime).prefix
    model, tokenizer = load_exported(study_dir, regime)
    where = pick_device(device)
    model.to(where)
    cleaned = [normalize_text(t) for t in texts]  # as the study cleaned its pairs
    todo = sorted((i for i, t in enumerate(cleaned) if t), key=lambda i: len(cleaned[i]), reverse=True)
    result = [""] * len(texts)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        inputs = tokenizer([prefix + cleaned[i] for i in chunk], return_tensors="pt", padding=True).to(where)
        with torch.no_grad():
            generated = model.generate(**inputs)
        for i, text in zip(chunk, tokenizer.batch_decode(generated, skip_special_tokens=True)):
            result[i] = text.strip()
    return result


def main(argv: list[str] | None = None) -> int:
    # intermixed: sentences may come before or after --regime and friends (`STUDY --regime full "text"`)
    args = build_parser().parse_intermixed_args(argv)
    return run_cli(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    from study.outputs.export import best_regime, pick_regimes

    if args.batch_size <= 0:
        raise StudyError(f"--batch-size must be positive, got {args.batch_size}")
    if args.regime and "," in args.regime:
        raise StudyError("--regime takes one regime here; run the command once per regime")
    texts = read_sentences(args)  # bad input fails before a model is loaded
    study_dir = Path(args.study)
    regime = pick_regimes(study_dir, args.regime)[0] if args.regime else best_regime(study_dir)
    for line in translate_texts(study_dir, regime, texts, args.device, args.batch_size):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
