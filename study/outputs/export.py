"""Each regime's best model as a standard Hugging Face folder, `results/<study>/<regime>/model/`.

The folder holds the weights (safetensors), the tokenizer, `generation_config.json` and a model card
(README.md), so that plain transformers translates as the study decoded:

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder)
    out = model.generate(**tokenizer(prefix + text, return_tensors="pt"))

The generation settings are the best trial's: its `num_beams` (and `early_stopping` with beams, as the
study's `generate` call) and `max_new_tokens = max_target_tokens`. One difference transformers cannot
express: the study caps each batch at `generation_limit(source tokens)` = min(max_target_tokens,
1.5 x source + 10) new tokens, a cap that depends on the input, while generation_config.json holds one
fixed number. A translation that ends (emits </s>) before that cap - every sentence of a model that has
learnt the task - is identical; a babbling model is cut later by plain `generate` than by the study.
`study.translate` decodes as the folder does (plain `generate`); `study.evaluate` scores as the study
scored its test split (`study.metrics.generation.score_split`, cap included), so its figures compare.

The model exported is the one best.json records (its checkpoint and config), re-loaded through
`study.training.checkpoints` so it is exactly the model the test split scored. A regime whose model is
not a plain T5 (say, adapters) merges it first through its `Regime.export_model` hook, when it has one.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import transformers

from study.common import DAMAGED_HINT, atomic_dir, read_json_file
from study.config import Config, StudyError
from study.data.prepared import PreparedData
from study.data.tokenizer import is_tiny
from study.metrics.scoring import signatures
from study.model import provenance
from study.model.regimes import get_regime
from study.training.checkpoints import load_trained_model

MODEL_DIR = "model"
TASK = "translation_en_to_fr"  # the key t5-small's own config.json keeps its French prefix under


def model_dir(study_dir: str | Path, regime: str) -> Path:
    """Where the regime's exported model lives."""
    return Path(study_dir) / regime / MODEL_DIR


def export_best(study_dir: Path, regime: str, data: PreparedData, tune_storage: str | None = None) -> Path:
    """Export the model of `<study_dir>/<regime>/best.json` to `<study_dir>/<regime>/model/` and return it.

    The folder appears whole or not at all, and only once a reload from it gives back every tensor (a model
    that a standard T5 cannot hold, such as decoder_embedding=untied, raises StudyError instead)."""
    row = read_json_file(Path(study_dir) / regime / "best.json")
    config = Config.from_dict(row["config"])
    model = _load_best(row, config, data, tune_storage)
    hook = getattr(get_regime(regime), "export_model", None)  # e.g. LoRA: adapters merged into a plain T5
    if hook is not None:
        model = hook(model)
    model = model.to("cpu").eval()
    model.config.task_specific_params = {TASK: {"prefix": config.prefix}}
    generation = model.generation_config
    generation.num_beams = config.num_beams
    generation.max_new_tokens = config.max_target_tokens
    generation.do_sample = False
    # As the study's generate call: beam search stops once num_beams hypotheses are done (transformers warns
    # about early_stopping with greedy decoding, hence only with beams).
    generation.early_stopping = config.num_beams > 1
    final = model_dir(study_dir, regime)
    tmp = atomic_dir(final)
    transformers.utils.logging.disable_progress_bar()  # the study's log is no place for save/load bars
    try:
        model.save_pretrained(str(tmp))
        data.tokenizer.save_pretrained(str(tmp))
        _check_round_trip(model, tmp, regime, config)
        study = _study_record(Path(study_dir))
        (tmp / "README.md").write_text(model_card(regime, row, config, study, data.counts), encoding="utf-8")
        if final.exists():  # a resumed study exports again: the new folder replaces the old one whole
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        transformers.utils.logging.enable_progress_bar()
    return final


def export_or_warn(study_dir: Path, regime: str, data: PreparedData, tune_storage: str | None = None) -> None:
    """`export_best`, with a failure reported on stderr: the study's results are complete without it."""
    try:
        path = export_best(study_dir, regime, data, tune_storage)
        print(f"[{regime}] model exported: {path}", flush=True)
    except Exception as err:  # noqa: BLE001 - an export problem must not end a finished search
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"warning: could not export {regime}'s model ({type(err).__name__}: {first}); its results "
              f"are complete", file=sys.stderr, flush=True)


def _load_best(row: dict, config: Config, data: PreparedData, tune_storage: str | None):
    """The model best.json describes: its checkpoint's weights, or as built for a regime that trains nothing."""
    checkpoint = row.get("checkpoint")
    if checkpoint is None:
        return load_trained_model(config, data.tokenizer, None, data.upstream)
    if Path(checkpoint).is_dir():
        return load_trained_model(config, data.tokenizer, checkpoint, data.upstream)
    if tune_storage and "://" in tune_storage:  # a study at a URI records the checkpoint's path in that storage
        import pyarrow.fs
        from ray.train import Checkpoint

        filesystem, _ = pyarrow.fs.FileSystem.from_uri(tune_storage)
        with Checkpoint(checkpoint, filesystem).as_directory() as directory:
            return load_trained_model(config, data.tokenizer, directory, data.upstream)
    raise StudyError(f"the checkpoint best.json records is gone: {checkpoint}")


def _check_round_trip(model, folder: Path, regime: str, config: Config) -> None:
    """Reload the folder as a user would and compare every tensor: T5 re-ties its embeddings on load, so a
    model whose decoder has its own embedding would otherwise come back silently different."""
    from transformers import T5ForConditionalGeneration

    reloaded = T5ForConditionalGeneration.from_pretrained(str(folder)).state_dict()
    differ = [k for k, v in model.state_dict().items() if k not in reloaded or not torch.equal(v, reloaded[k])]
    if differ:
        hint = (" (decoder_embedding=untied gives the decoder an embedding of its own, which a standard "
                "T5ForConditionalGeneration ties back to the encoder's)" if config.decoder_embedding == "untied"
                and regime == "decoder" else "")
        raise StudyError(f"a standard T5 folder cannot hold {regime}'s model: {', '.join(differ[:3])} change on "
                         f"reload{hint}")


def _study_record(study_dir: Path) -> dict:
    return read_json_file(Path(study_dir) / "study.json", missing_ok=True) or {}


def _data_line(spec: str) -> str:
    """What the model learnt from, and under which licence."""
    if spec == "sample":
        return ("the corpus bundled with the project (`study.data.sample`: sentences generated from a small "
                "English/French grammar), Apache-2.0")
    if spec.startswith("hf:"):
        return f"the Hugging Face dataset `{spec[3:]}`: its dataset card gives its licence"
    return (f"`{Path(spec).name}`, a local pairs file; Tatoeba pairs (such as the Anki fra-eng export) are "
            "CC BY 2.0 FR: credit tatoeba.org when publishing")


def _figure(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _how_chosen(row: dict, budget: dict, config: Config, trains: bool) -> str:
    if not trains:
        return (f"Nothing was trained: {row.get('trials', '?')} trial(s), one per decoding setting searched, "
                "ranked by validation BLEU.")
    stopping = "ASHA early stopping" if budget.get("scheduler", "asha") == "asha" else "no early stopping"
    return (f"{row.get('trials', '?')} trial(s) searched by Optuna ({budget.get('searcher', 'tpe')}) with {stopping} "
            f"({row.get('pruned', 0)} pruned), up to {budget.get('max_epochs', config.epochs)} epoch(s) each; the "
            "trial whose best epoch scored the highest validation BLEU won, and that epoch's weights are these.")


def _upstream_line(regime: str, config: Config, study: dict) -> str:
    """What the weights this model started from saw (study.json's `upstream`), or that it started from none."""
    if not get_regime(regime).pretrained:
        return (f"None: a random initialisation of `{config.model}`'s configuration, every weight learnt in this "
                "study.")
    return provenance.sentence(study.get("upstream") or provenance.describe(config.model))


def _signature(row: dict, metric: str) -> str:
    """best.json's sacrebleu signature of `metric` (bleu, chrf); studies scored before it was recorded: this
    sacrebleu's, which `study.metrics.scoring` configures the same way."""
    return row.get(f"{metric}_signature") or signatures()[f"{metric}_signature"]


def _dataset(spec: str) -> tuple[str, str, str | None]:
    """(type, name, config) of the data for the card's model-index: the Hub dataset id where there is one."""
    if spec == "sample":
        return "t5-regime-study/sample", "t5-regime-study bundled English/French grammar corpus", None
    if spec.startswith("hf:"):
        name, _, config_name = spec[3:].partition(":")
        return name, name, config_name or None
    return Path(spec).name, f"{Path(spec).name} (local English/French pairs file)", None


def base_model(regime: str, model: str) -> str | None:
    """The Hub model a regime's weights started from: `config.model` for a pretrained regime when it is a Hub
    id; none for a regime trained from a random init, the offline tiny upstream or a local directory."""
    if not get_regime(regime).pretrained or is_tiny(model) or Path(model).expanduser().exists():
        return None
    return model


def card_data(regime: str, row: dict, config: Config, study: dict):
    """The card's metadata (huggingface_hub's ModelCardData): language, licence, tags, base model and the
    `model-index` the Hub reads evaluation results from: best.json's test BLEU and chrF, with their sacrebleu
    signatures as each metric's config, on the study's test split."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset_type, dataset_name, dataset_config = _dataset(config.data)
    results = [EvalResult(task_type="translation", task_name="Translation English to French",
                          dataset_type=dataset_type, dataset_name=dataset_name, dataset_config=dataset_config,
                          dataset_split="test", metric_type=metric, metric_name=label,
                          metric_value=float(row[f"test_{metric}"]), metric_config=_signature(row, metric))
               for metric, label in (("bleu", "BLEU"), ("chrf", "chrF")) if row.get(f"test_{metric}") is not None]
    return ModelCardData(language=["en", "fr"], license="apache-2.0", tags=["translation", "t5"],
                         pipeline_tag="translation", base_model=base_model(regime, config.model),
                         datasets=[dataset_type] if config.data.startswith("hf:") else None,
                         model_name=f"{study.get('name', 'study')}-{regime}", eval_results=results or None)


def model_card(regime: str, row: dict, config: Config, study: dict, counts: dict) -> str:
    """The README.md of an exported model: what it is, its figures, its data and licence, how it was chosen."""
    budget = study.get("budget", {})
    searched = list(study.get("search_spaces", {}).get(regime, {}).get("search", {}))
    chosen = ", ".join(f"{name}={row[name]}" for name in searched if row.get(name) is not None) or "none searched"
    trains = get_regime(regime).trains
    sizes = ", ".join(f"{counts[s]:,} {s}" for s in ("train", "validation", "test") if s in counts)
    summary = get_regime(regime).summary
    figures = [("best validation BLEU (what chose this model)",
                f"{_figure(row.get('best_val_bleu'))} (epoch {row.get('best_epoch')})"),
               ("test BLEU", _figure(row.get("test_bleu"))), ("test chrF", _figure(row.get("test_chrf"))),
               ("test exact match", _figure(row.get("test_exact_match"), 3)),
               ("test loss / perplexity", f"{_figure(row.get('test_loss'), 3)} / {_figure(row.get('test_ppl'))}"),
               ("test pairs", _figure(row.get("test_pairs")))]
    table = "\n".join(f"| {name} | {value} |" for name, value in figures)
    beams = f"{config.num_beams} beam(s)" if config.num_beams > 1 else "greedy decoding"
    return f"""---
{card_data(regime, row, config, study).to_yaml()}
---

# {study.get("name", "study")} / {regime}: English→French T5

The best model of the `{regime}` regime ({summary}) of the t5-regime-study study
`{study.get("name", "?")}` (model `{config.model}`, {row.get("total_params", 0):,} parameters, of which
{row.get("trainable_params", 0):,} trained).

| figure | value |
| --- | --- |
{table}

BLEU and chrF are sacrebleu's (`{_signature(row, "bleu")}`, `{_signature(row, "chrf")}`), one reference
per pair, on the study's held-out test split (also in this card's `model-index`, which the Hub shows).

## Use

```python
from transformers import AutoTokenizer, T5ForConditionalGeneration

tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
model = T5ForConditionalGeneration.from_pretrained("path/to/this/folder")
inputs = tokenizer({config.prefix!r} + "The cat sees the dog.", return_tensors="pt")
print(tokenizer.decode(model.generate(**inputs)[0], skip_special_tokens=True))
```

The task prefix `{config.prefix}` is required (also in `config.json`'s `task_specific_params`).
`generation_config.json` holds the study's decoding: {beams}, at most {config.max_target_tokens} new tokens.
The study also capped each sentence at 1.5 x its source tokens + 10 new tokens, a limit that depends on the
input and that transformers cannot store; a translation that ends before it is identical.

## Upstream

{_upstream_line(regime, config, study)}

## Data

{"Trained" if trains else "Nothing trained; the study's data"} on {_data_line(config.data)}; cleaned and split by English sentence ({sizes or "sizes not recorded"},
split seed {config.data_seed}), sources of at most {config.max_source_tokens} tokens.

## How it was chosen

{_how_chosen(row, budget, config, trains)} Its settings: {chosen}. The test split was scored once,
on this model only, after the search: its figures are reported, never used to choose. The study's best
regime (the one `python -m study.translate` uses by default) is chosen the same way, by the highest
validation BLEU among its exported regimes.

## Licence

Apache-2.0, as the project (t5-small's weights and tokenizer are Apache-2.0 too); the training data's own
licence is given above.
"""


# --- reading an exported study back (study.translate, study.evaluate) ---------------------------------------


def exported_regimes(study_dir: str | Path) -> list[str]:
    """The regimes of a study folder that have an exported model, in the study's order."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise StudyError(f"{study_dir} is not a study folder" + (" (it is a file)" if study_dir.exists() else "")
                         + "; pass results/<study name>, the folder study.run wrote")
    order = _study_record(study_dir).get("regimes") or sorted(p.name for p in study_dir.iterdir() if p.is_dir())
    found = [r for r in order if (model_dir(study_dir, r) / "config.json").is_file()]
    if not found:
        raise StudyError(f"no exported model in {study_dir} (no <regime>/model/ folder): models are exported when "
                         f"a regime's search finishes; run the study, or resume it, with this version")
    return found


def pick_regimes(study_dir: str | Path, regimes: str | None) -> list[str]:
    """The regimes a command asked for (a comma list), each checked to have an exported model; default: all."""
    found = exported_regimes(study_dir)
    if regimes is None:
        return found
    wanted = [r.strip() for r in regimes.split(",") if r.strip()]
    missing = [r for r in wanted if r not in found]
    if missing or not wanted:
        raise StudyError(f"no exported model for regime(s) {missing or [regimes]} in {study_dir}; "
                         f"it has {', '.join(found)}")
    return wanted


def best_regime(study_dir: str | Path) -> str:
    """The exported regime with the highest validation BLEU (best.json's `best_val_bleu`): the regime to deploy
    is chosen as the study chooses everything, on validation; its test figures are reported, never used to
    choose (the test split would then no longer be an unseen estimate of the chosen model)."""
    found = exported_regimes(study_dir)

    def val_bleu(regime: str) -> float:
        path = Path(study_dir) / regime / "best.json"
        value = (read_json_file(path, missing_ok=True) or {}).get("best_val_bleu")
        return float("-inf") if value is None else float(value)

    return max(found, key=val_bleu)


def study_config(study_dir: str | Path, regime: str) -> Config:
    """The Config the regime's exported model was trained and decoded with (best.json's)."""
    path = Path(study_dir) / regime / "best.json"
    record = read_json_file(path)
    if not isinstance(record.get("config"), dict):
        raise StudyError(f"{path} is damaged: it has no config; {DAMAGED_HINT}")
    return Config.from_dict(record["config"])


def load_exported(study_dir: str | Path, regime: str):
    """(model, tokenizer) of the regime's exported folder, loaded exactly as a user of the folder would."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    folder = model_dir(study_dir, regime)
    transformers.utils.logging.disable_progress_bar()  # a command's output is its translations, not load bars
    try:
        return T5ForConditionalGeneration.from_pretrained(str(folder)).eval(), AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, safetensors' own error on a cut file, ...
        raise StudyError(f"cannot load the exported model {folder} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'}): the folder is damaged or "
                         f"half-written; it was left as it is: restore it, or export it again by deleting "
                         f"{folder} and resuming the study") from err
