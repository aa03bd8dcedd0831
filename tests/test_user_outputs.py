"""What a user takes away from a study: each regime's exported Hugging Face folder, the translate and evaluate
commands, the study in optuna-dashboard and TensorBoard, a clean `pip install .`, and the early failures a
new user meets, each one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import site
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY_FLAGS, write_pairs

from study import common
from study.data.sample import corpus
from study.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]
slow = pytest.mark.slow  # starts Ray and trains tiny models


@pytest.fixture(scope="module")
def study(pruning_study) -> Path:
    """The session's real study of `scratch` (conftest's `pruning_study`: a learning rate that learns and one
    that cannot, so ASHA stopped trials and Optuna recorded them PRUNED), its best model exported. Read only:
    a test that writes into a study folder works on a copy."""
    return pruning_study.path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- the exported folder and the translate command ----------------------------------------------------------


@slow
def test_exported_folder_translates_with_from_pretrained_alone(study, tmp_path, capsys):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from study.training.checkpoints import load_checkpoint
    from study.translate import main as translate_main

    folder = study / "scratch" / "model"
    best = json.loads((study / "scratch" / "best.json").read_text())
    assert {"model.safetensors", "generation_config.json", "tokenizer_config.json", "README.md"} <= {
        p.name for p in folder.iterdir()}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder)
    # the study's decoding settings travel in generation_config.json
    assert model.generation_config.num_beams == best["config"]["num_beams"]
    assert model.generation_config.max_new_tokens == best["config"]["max_target_tokens"]
    # the weights are the best trial's best epoch, the checkpoint best.json records
    trained = load_checkpoint(best["checkpoint"])["model"]
    exported = model.state_dict()
    assert trained.keys() <= exported.keys()
    assert all((trained[k] == exported[k]).all() for k in trained)
    card = (folder / "README.md").read_text()
    assert f"| test BLEU | {best['test_bleu']:.2f} |" in card and "license: apache-2.0" in card and "CC BY" in card
    assert f"| best validation BLEU (what chose this model) | {best['best_val_bleu']:.2f}" in card
    assert "never used to choose" in card

    prefix = model.config.task_specific_params["translation_en_to_fr"]["prefix"]
    assert prefix == best["config"]["prefix"]
    english = [en for en, _ in corpus.generate_pairs(24, seed=7)]
    plain = [tokenizer.decode(model.generate(**tokenizer(prefix + text, return_tensors="pt"))[0],
                              skip_special_tokens=True).strip() for text in english]
    lines = english[:12] + [""] + english[12:]  # a blank line stays blank, in its place
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert translate_main([str(study), "--regime", "scratch", "--input", str(tmp_path / "in.txt")]) == 0
    printed = capsys.readouterr().out.split("\n")[:-1]
    assert printed == plain[:12] + [""] + plain[12:]
    # the default regime is the best by validation BLEU (the only one here), sentences may come as arguments
    assert translate_main([str(study), english[0], english[1]]) == 0
    assert capsys.readouterr().out.splitlines() == plain[:2]


@slow
def test_model_card_model_index_reads_back_as_best_json(study, tmp_path):
    """The Hub (and huggingface_hub) read a card's evaluation results from its model-index: the exported card's
    test BLEU and chrF, their sacrebleu signatures, the data and its test split, as best.json records them."""
    from huggingface_hub import ModelCard

    from study.config import Config
    from study.outputs.export import base_model, card_data

    folder = shutil.copytree(study / "scratch" / "model", tmp_path / "model")
    best = json.loads((study / "scratch" / "best.json").read_text())
    card = ModelCard.load(folder / "README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"bleu", "chrf"}
    for metric, result in results.items():
        assert result.metric_value == best[f"test_{metric}"]
        assert result.metric_config == best[f"{metric}_signature"] and "nrefs:1" in result.metric_config
        assert (result.task_type, result.dataset_split) == ("translation", "test")
        # the study's data is a local pairs file: named by its file, not passed off as a Hub dataset
        assert result.dataset_type == Path(best["config"]["data"]).name
    assert card.data.model_name == "pruned-scratch" and card.data.license == "apache-2.0"
    assert card.data.base_model is None  # scratch starts from a random init: no base model to name
    assert card.data.datasets is None
    # a pretrained regime names the Hub model it started from; a random init, the tiny upstream or a local
    # folder has none a Hub user could follow
    assert base_model("full", "google-t5/t5-small") == "google-t5/t5-small"
    assert base_model("scratch", "google-t5/t5-small") is None
    assert base_model("full", "tiny") is None and base_model("full", str(folder)) is None
    hub = card_data("full", best, Config(data="hf:wmt14:fr-en", model="google-t5/t5-small"), {"name": "s"})
    assert hub.datasets == ["wmt14"] and hub.base_model == "google-t5/t5-small"
    assert {(r.dataset_type, r.dataset_config) for r in hub.eval_results} == {("wmt14", "fr-en")}


@slow
def test_mlflow_holds_every_trial_and_the_best_as_the_study_wrote_them(pruning_study, monkeypatch):
    """--mlflow file:...: one MLflow run per trial (params, every epoch's metrics, study and regime as tags) as
    the trial's params.json and result.json say, and one for the regime's best with best.json's test scores and
    the exported model folder as artifacts."""
    mlflow = pytest.importorskip("mlflow")
    if pruning_study.mlflow is None:
        pytest.skip("the session's study ran without MLflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to read a file store
    client = mlflow.MlflowClient(tracking_uri=pruning_study.mlflow)
    was = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(pruning_study.mlflow)
    try:
        runs = mlflow.search_runs(experiment_names=["pruned"])
    finally:
        mlflow.set_tracking_uri(was)
    assert set(runs["tags.study"]) == {"pruned"} and set(runs["tags.regime"]) == {"scratch"}
    trials = runs[runs["tags.run"] == "trial"].set_index("tags.trial_name")
    folders = {d.name.split("_")[2]: d for d in (pruning_study.path / "scratch").iterdir()
               if d.is_dir() and (d / "result.json").exists()}
    assert len(trials) == len(folders) == 4
    for name, run in trials.iterrows():
        trial_dir = folders[name.rsplit("_", 1)[-1]]  # Ray's trial name ends with the trial id
        params = json.loads((trial_dir / "params.json").read_text())
        assert float(run["params.lr"]) == params["lr"] and int(run["params.num_beams"]) == params["num_beams"]
        epochs = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        history = client.get_metric_history(run["run_id"], "val_bleu")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (e["training_iteration"], pytest.approx(e["val_bleu"])) for e in epochs]
        assert run["status"] == "FINISHED"
    assert sorted(len(client.get_metric_history(r, "val_loss")) for r in trials["run_id"]) == sorted(
        len((d / "result.json").read_text().splitlines()) for d in folders.values())  # pruned trials: fewer epochs

    best = json.loads((pruning_study.path / "scratch" / "best.json").read_text())
    [(_, top)] = runs[runs["tags.run"] == "best"].iterrows()
    assert top["tags.mlflow.runName"] == "scratch-best" and top["tags.trial_id"] == best["trial_id"]
    for key in ("test_bleu", "test_chrf", "test_loss", "test_exact_match", "best_val_bleu"):
        assert top[f"metrics.{key}"] == pytest.approx(best[key]), key
    assert float(top["params.lr"]) == best["lr"]
    artifacts = {a.path for a in client.list_artifacts(top["run_id"])}
    model = {a.path for a in client.list_artifacts(top["run_id"], "model")}
    assert {"best.json", "test.hyp.txt", "test.ref.txt", "model"} <= artifacts
    assert {"model/config.json", "model/model.safetensors", "model/README.md"} <= model


def test_mlflow_bad_store_is_one_line(tmp_path, capsys):
    pytest.importorskip("mlflow")
    assert run_main(["--regime", "scratch", "--mlflow", "postgresql://nobody@127.0.0.1:1/none",
                     "--results", str(tmp_path)]) == 2
    assert "cannot open the MLflow tracking store" in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())  # nothing written, Ray never started


@slow  # reads the session's real study (conftest's pruning_study): a whole Ray study, no fast-lane test
def test_translate_deploys_the_best_regime_by_validation_not_test(study, tmp_path, capsys):
    """A study whose validation and test winners differ (the session's `scratch` copied as `full`, best.json's
    figures edited): translate's default is `full`, best on validation, though `scratch` is best on test."""
    from study.outputs.export import best_regime
    from study.translate import main as translate_main

    copy = Path(shutil.copytree(study, tmp_path / "study"))
    shutil.copytree(copy / "scratch", copy / "full")
    record = json.loads((copy / "study.json").read_text())
    (copy / "study.json").write_text(json.dumps({**record, "regimes": ["scratch", "full"]}))
    for regime, val, test in (("scratch", 10.0, 30.0), ("full", 20.0, 5.0)):
        best = json.loads((copy / regime / "best.json").read_text())
        (copy / regime / "best.json").write_text(json.dumps({**best, "regime": regime, "best_val_bleu": val,
                                                             "test_bleu": test, "test_bleu_mean": test}))
    # `full`'s folder decodes at most one token, so its translations tell which model translate loaded
    generation = copy / "full" / "model" / "generation_config.json"
    generation.write_text(json.dumps({**json.loads(generation.read_text()), "max_new_tokens": 1}))
    assert best_regime(copy) == "full"
    english = [en for en, _ in corpus.generate_pairs(4, seed=3)]
    outputs = {}
    for regime in ("scratch", "full", None):
        capsys.readouterr()
        assert translate_main([str(copy), *(["--regime", regime] if regime else []), *english]) == 0
        outputs[regime] = capsys.readouterr().out
    assert outputs["scratch"] != outputs["full"] and outputs[None] == outputs["full"]


@slow
@pytest.mark.parametrize("args, needle", [
    (["--regime", "full", "Hello."], "no exported model for regime(s) ['full']"),
    ([], "nothing to translate"),
    (["--input", "/no/such/file.txt"], "no such file"),
])
def test_translate_bad_input_is_one_line(study, args, needle, capsys):
    from study.translate import main as translate_main

    assert translate_main([str(study), *args]) == 2
    assert needle in _one_error_line(capsys)


def test_a_model_a_standard_t5_cannot_hold_is_refused_and_nothing_published(spm_tokenizer, tmp_path):
    """decoder_embedding=untied trains a decoder embedding of its own, which T5ForConditionalGeneration ties
    back to the encoder's on load: the export must say so rather than publish a different model."""
    import torch
    from transformers import T5ForConditionalGeneration

    from study.config import Config, StudyError
    from study.data.prepared import PreparedData
    from study.model.regimes import build_model
    from study.model.weights import tiny_config
    from study.outputs.export import export_best
    from study.training.checkpoints import save_checkpoint

    base = Config(regime="decoder", tiny_d_model=32, tiny_heads=2, tiny_d_ff=64, tiny_layers=1,
                  cache_dir=str(tmp_path / "cache"))
    upstream = T5ForConditionalGeneration(tiny_config(base, spm_tokenizer)).state_dict()
    data = PreparedData(spm_tokenizer, None, None, None, {"train": 10}, upstream)
    for embedding in ("frozen", "untied"):
        config = base.replace(decoder_embedding=embedding)
        model, _ = build_model(config, spm_tokenizer, upstream)
        with torch.no_grad():  # as training would: the decoder's (own or shared) embedding moves
            model.decoder.embed_tokens.weight.add_(1.0)
        optimizer = torch.optim.AdamW(model.parameters())
        checkpoint = tmp_path / embedding / "checkpoint"
        checkpoint.mkdir(parents=True)
        save_checkpoint(checkpoint, model=model, optimizer=optimizer, epoch=1, config=config,
                        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
        study = tmp_path / embedding / "study"
        (study / "decoder").mkdir(parents=True)
        (study / "decoder" / "best.json").write_text(json.dumps(
            {"config": config.to_dict(), "checkpoint": str(checkpoint), "test_bleu": 1.0}))
        if embedding == "frozen":
            folder = export_best(study, "decoder", data)
            reloaded = T5ForConditionalGeneration.from_pretrained(folder).state_dict()
            assert all(torch.equal(v, reloaded[k]) for k, v in model.state_dict().items())
            continue
        with pytest.raises(StudyError, match="cannot hold decoder's model: decoder.embed_tokens.weight"):
            export_best(study, "decoder", data)
        assert sorted(p.name for p in (study / "decoder").iterdir()) == ["best.json"]  # no folder, no leftovers


def test_translate_and_evaluate_need_a_study_folder(tmp_path, capsys):
    from study.evaluate import main as evaluate_main
    from study.translate import main as translate_main

    (tmp_path / "file").write_text("x")
    assert translate_main([str(tmp_path / "file"), "Hello."]) == 2
    assert "is not a study folder (it is a file)" in _one_error_line(capsys)
    assert evaluate_main([str(tmp_path), "--data", "sample"]) == 2
    assert "no exported model in" in _one_error_line(capsys)


# --- the evaluate command -----------------------------------------------------------------------------------


@slow
def test_evaluate_scores_as_the_sacrebleu_command_line_does(study, tmp_path, capsys):
    from study.evaluate import main as evaluate_main

    study = Path(shutil.copytree(study, tmp_path / "study"))  # evaluate writes beside the study's own files
    other = write_pairs(tmp_path / "other.tsv", 60, seed=11)
    assert evaluate_main([str(study), "--data", str(other), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()  # stdout is the table alone
    assert header.split()[:3] == ["regime", "pairs", "bleu"] and row.split()[:2] == ["scratch", "60"]
    rows = list(csv.DictReader((study / "evaluate-other.csv").open()))
    assert [r["regime"] for r in rows] == ["scratch"] and int(rows[0]["pairs"]) == 60
    assert rows[0]["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    hyp, ref = study / "scratch" / "evaluate-other.hyp.txt", study / "scratch" / "evaluate-other.ref.txt"
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-m", "bleu", "chrf", "-b",
                          "-w", "4"], capture_output=True, text=True, check=True).stdout
    bleu, chrf = json.loads(cli)
    assert round(float(rows[0]["bleu"]), 4) == bleu and round(float(rows[0]["chrf"]), 4) == chrf

    # bad --data: the study's one-line error, and nothing written
    assert evaluate_main([str(study), "--data", str(tmp_path / "missing.tsv")]) == 2
    assert "data file not found" in _one_error_line(capsys)
    assert not (study / "evaluate-missing.csv").exists()


# --- the tools users already open ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@slow
def test_optuna_dashboard_serves_the_study_with_its_pruned_trials(study):
    pytest.importorskip("optuna_dashboard")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", "import sys; from optuna_dashboard._cli import main; sys.exit(main())",
                               f"sqlite:///{study / 'optuna.db'}", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, studies = time.monotonic() + 120, None
        while studies is None and time.monotonic() < deadline and server.poll() is None:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, server.stdout.read() if server.poll() is not None else "no answer"
        (scratch,) = [s for s in studies if s["study_name"] == "scratch"]
        trials = _get(f"http://127.0.0.1:{port}/api/studies/{scratch['study_id']}")["trials"]
        states = [t["state"] for t in trials]
        assert len(trials) == 4 and "Pruned" in states and "Complete" in states, states
    finally:
        server.terminate()
        server.wait(timeout=30)


def _scalars(event_file: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard event file: tensorboard's reader if installed, else the TFRecord frames
    (length, crc, Event, crc) parsed with tensorboardX's Event message."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        from tensorboardX.proto.event_pb2 import Event

        found: dict[str, list[tuple[int, float]]] = {}
        data = event_file.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
        return found
    accumulator = EventAccumulator(str(event_file))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@slow
def test_tensorboard_event_files_carry_val_bleu_per_epoch(study):
    trials = sorted(p for p in (study / "scratch").iterdir() if p.name.startswith("trial_"))
    assert len(trials) == 4
    for trial in trials:
        (event_file,) = trial.glob("events.out.tfevents.*")
        (tag,) = [t for t in _scalars(event_file) if t.endswith("/val_bleu")]
        logged = [round(v, 4) for _, v in _scalars(event_file)[tag]]
        results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert logged == [round(r["val_bleu"], 4) for r in results] and len(logged) == results[-1]["epoch"]


# --- early failures: one line, non-zero exit ----------------------------------------------------------------


CLIS = {  # each CLI with the arguments it needs besides the mistyped flag
    "study.run": [], "study.trial": [], "study.pretrain": [], "study.analyze": ["somewhere"],
    "study.translate": ["somewhere", "text"], "study.evaluate": ["somewhere", "--data", "x.tsv"],
}


@pytest.mark.parametrize("module", CLIS)
def test_mistyped_flag_prints_a_short_usage_and_the_error(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as ended:
        importlib.import_module(module).main([*CLIS[module], "--lerning-rate", "3"])
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("usage: python -m") and "--help" in err[0], err
    assert err[1].startswith("error: unrecognized arguments: --lerning-rate")


def test_results_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "results.txt").write_text("not a folder")
    assert run_main(["--regime", "scratch", "--results", str(tmp_path / "results.txt")]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys)


@pytest.fixture
def no_network(monkeypatch):
    """A machine without network: no connection to anywhere, and no offline variable set."""
    for name in common.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    common.hub_offline.cache_clear()
    yield
    common.hub_offline.cache_clear()


@pytest.mark.parametrize("flags, needle", [
    (["--model", "no-such-user/no-such-model-19"], "cannot load the model 'no-such-user/no-such-model-19': the "
                                                   "Hugging Face Hub is unreachable (no connection to huggingface.co:443"),
    (["--data", "hf:no-such-user/no-such-data-19"], "cannot load the dataset 'hf:no-such-user/no-such-data-19': the "
                                                    "Hugging Face Hub is unreachable"),
])
def test_hub_without_network_is_one_line(no_network, flags, needle, tmp_path, capsys):
    assert run_main(["--regime", "scratch", *flags, "--results", str(tmp_path / "results")]) == 2
    assert needle in _one_error_line(capsys)
    assert not (tmp_path / "results").exists()


def test_hub_model_with_hf_hub_offline_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    common.hub_offline.cache_clear()
    try:
        assert run_main(["--regime", "scratch", "--model", "no-such-user/no-such-model-19",
                         "--results", str(tmp_path / "results")]) == 2
    finally:
        common.hub_offline.cache_clear()
    line = _one_error_line(capsys)
    assert "unreachable (HF_HUB_OFFLINE=1) and it is not in the local Hugging Face cache" in line
    assert not (tmp_path / "results").exists()


# --- a clean install ----------------------------------------------------------------------------------------


@slow
def test_pip_install_into_a_fresh_venv_runs_a_study_from_another_folder(tmp_path):
    """`pip install .` (not editable) of the project's files alone, then a study from a folder that is not the
    checkout: the installed copy runs, and finds its default search spaces as package data."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "study", source / "study", ignore=ignore, symlinks=True)
    shutil.copytree(ROOT / "search_spaces", source / "search_spaces", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    # A fresh venv as a user makes one (`python -m venv`: its own pip, no system site packages), which sees
    # this interpreter's installed packages (torch, ray, ...) through a .pth file, so nothing big is
    # downloaded. Not `--system-site-packages`: from inside a virtualenv that shows the *base* interpreter's
    # packages, not the virtualenv's. The project builds in pip's isolated build environment, which fetches
    # the build backend pyproject.toml asks for (setuptools>=68) from the package index, whatever setuptools
    # the interpreter has: this works from a virtualenv and from a bare interpreter alike.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    own_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    Path(own_site, "parent-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(source)],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    shutil.rmtree(source)  # nothing may come from the copied sources
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import study; print(study.__file__)"], capture_output=True, text=True,
                           env=env, cwd=elsewhere, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    run = subprocess.run([python, "-m", "study.run", "--regime", "upstream", "--no-analysis",
                          "--data", str(write_pairs(elsewhere / "pairs.tsv", 400, 0)), "--results", "results",
                          "--name", "clean", "--cache-dir", str(tmp_path / "cache"), "--max-eval-pairs", "20",
                          "--max-test-pairs", "20", *TINY_FLAGS, "--pretrain-steps", "10"],
                         capture_output=True, text=True, env=env, cwd=elsewhere, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads((elsewhere / "results" / "clean" / "study.json").read_text())
    assert Path(record["search_spaces"]["upstream"]["source"]).is_relative_to(venv)
    assert (elsewhere / "results" / "clean" / "upstream" / "best.json").is_file()
    assert (elsewhere / "results" / "clean" / "upstream" / "model" / "model.safetensors").is_file()
