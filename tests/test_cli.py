"""The ``inspect-app`` command line: fit, predict (JSON, overlays, bad files), list, and user errors
as one line with exit status 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspect_app.cli import app

from conftest import ImageFactory, paste_blob

CLI_SIZE = 64  # no localisation is checked here: the smallest model input keeps the CLI tests fast


def _fit_args(folder: Path, product: str, *extra: str) -> list[str]:
    """``fit`` on the foundation path (the memory bank alone) at the smallest input size."""
    return ["fit", str(folder), "--product", product, "--image-size", str(CLI_SIZE), "--mode", "image-image", *extra]


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def _assert_user_error(result, *words: str) -> None:
    """Exit status 2, no traceback, an "error:" message naming ``words`` (line breaks aside:
    staying on one line is checked separately)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = _error_lines(result)
    assert lines and lines[0].startswith("error:"), lines
    message = " ".join(lines)
    for word in words:
        assert word in message, message


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    """Output goes to a pipe, as in a log: rich falls back to 80 columns there, which must not
    break a one-line error into several."""
    monkeypatch.delenv("INSPECT_APP_MODELS_DIR", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    return CliRunner()


@pytest.fixture(scope="module")
def fitted_cli(tmp_path_factory):
    """A product fitted through the CLI once for the module: (models dir, good folder)."""
    root = tmp_path_factory.mktemp("cli")
    good = ImageFactory(root, seed=10).folder("good", 10, size=CLI_SIZE)
    models = root / "models"
    result = CliRunner().invoke(app, _fit_args(good, "widget", "--models-dir", str(models)))
    assert result.exit_code == 0, result.output
    return models, good, result


def test_fit_writes_profile_and_reports(fitted_cli):
    models, _good, result = fitted_cli
    assert (models / "widget" / "profile.json").is_file()
    assert "fitted" in result.stdout and "widget" in result.stdout and "10 good images" in result.stdout
    assert "threshold" in result.stdout


def test_predict_folder_json_and_overlays(fitted_cli, runner: CliRunner, tmp_path: Path):
    models, _good, _ = fitted_cli
    factory = ImageFactory(tmp_path, seed=11)
    folder = tmp_path / "inspect"
    factory.write(folder / "a_good.png", factory.good(CLI_SIZE))
    factory.write(folder / "b_defect.png", paste_blob(factory.good(CLI_SIZE), 32, 32, radius=8))
    buf = io.BytesIO()
    Image.fromarray(factory.good(CLI_SIZE)).save(buf, format="PNG")
    (folder / "c_corrupt.png").write_bytes(buf.getvalue()[:200])
    (folder / "notes.txt").write_text("skip me")
    json_path, overlays = tmp_path / "out" / "results.json", tmp_path / "overlays"
    result = runner.invoke(app, ["predict", str(folder), "--product", "widget", "--models-dir", str(models),
                                 "--json", str(json_path), "--overlays", str(overlays)])
    assert result.exit_code == 0, result.output
    data = json.loads(json_path.read_text())
    assert isinstance(data, list) and len(data) == 3
    for entry in data:
        assert {"file", "verdict", "score", "threshold", "regions", "error"} <= set(entry)
    by_name = {Path(e["file"]).name: e for e in data}
    assert list(by_name) == ["a_good.png", "b_defect.png", "c_corrupt.png"]
    assert by_name["a_good.png"]["verdict"] == "PASS" and by_name["a_good.png"]["error"] is None
    assert by_name["b_defect.png"]["verdict"] == "FAIL" and by_name["b_defect.png"]["regions"]
    assert by_name["b_defect.png"]["score"] > by_name["a_good.png"]["score"]
    corrupt = by_name["c_corrupt.png"]
    assert corrupt["verdict"] == "ERROR" and corrupt["score"] is None and "c_corrupt.png" in corrupt["error"]
    written = sorted(p.name for p in overlays.iterdir())
    assert written == ["a_good_overlay.png", "b_defect_overlay.png"]
    overlay = np.asarray(Image.open(overlays / "b_defect_overlay.png"))
    assert overlay.shape == (CLI_SIZE, CLI_SIZE, 3)
    assert "PASS 1" in result.stdout and "FAIL 1" in result.stdout and "ERROR 1" in result.stdout


def test_predict_single_file(fitted_cli, runner: CliRunner, tmp_path: Path):
    models, good, _ = fitted_cli
    result = runner.invoke(app, ["predict", str(good / "good_000.png"), "--product", "widget",
                                 "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    assert "good_000.png" in result.stdout


def test_predict_missing_profile_is_one_line_error(runner: CliRunner, tmp_path: Path):
    image = ImageFactory(tmp_path, seed=12).write(tmp_path / "x.png", np.zeros((32, 32, 3), np.uint8))
    result = runner.invoke(app, ["predict", str(image), "--product", "ghost", "--models-dir", str(tmp_path / "m")])
    _assert_user_error(result, "ghost", "inspect-app fit")


def test_predict_missing_path_is_one_line_error(fitted_cli, runner: CliRunner, tmp_path: Path):
    models, _good, _ = fitted_cli
    result = runner.invoke(app, ["predict", str(tmp_path / "nowhere"), "--product", "widget",
                                 "--models-dir", str(models)])
    _assert_user_error(result, "nowhere")


def test_fit_empty_folder_says_how_many_images_are_needed(runner: CliRunner, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, _fit_args(tmp_path / "empty", "p", "--models-dir", str(tmp_path / "m")))
    _assert_user_error(result, "0 image", "at least 1")
    assert not (tmp_path / "m" / "p").exists()


def test_user_errors_stay_on_one_line_in_logs(runner: CliRunner, tmp_path: Path):
    """Piped to a log, rich wraps at 80 columns: a long error must still be a single line."""
    deep = tmp_path / ("a-rather-long-folder-name-for-a-production-line-" * 2) / "models"
    result = runner.invoke(app, ["predict", str(tmp_path), "--product", "ghost", "--models-dir", str(deep)])
    _assert_user_error(result, "ghost")
    assert len(_error_lines(result)) == 1, _error_lines(result)


@pytest.mark.parametrize("name", ["lot[/]", "lot[red]"])
def test_paths_with_brackets_are_printed_verbatim(runner: CliRunner, tmp_path: Path, name: str):
    """Messages carry user paths: they must not be read as rich markup (crash or lost text)."""
    folder = tmp_path / name  # "lot[/]" is folder "lot[" holding folder "]"
    folder.mkdir(parents=True)
    result = runner.invoke(app, _fit_args(folder, "p", "--models-dir", str(tmp_path / "m")))
    _assert_user_error(result, name, "at least 1")


def test_fit_invalid_product_name(runner: CliRunner, tmp_path: Path):
    folder = ImageFactory(tmp_path, seed=13).folder("good", 2, size=CLI_SIZE)
    result = runner.invoke(app, _fit_args(folder, "../evil", "--models-dir", str(tmp_path / "m")))
    _assert_user_error(result, "invalid product name")
    assert not (tmp_path / "evil").exists()


def test_models_dir_option_and_environment_variable(runner: CliRunner, tmp_path: Path):
    folder = ImageFactory(tmp_path, seed=14).folder("good", 2, size=CLI_SIZE)
    env_dir, opt_dir = tmp_path / "from_env", tmp_path / "from_option"
    env = {"INSPECT_APP_MODELS_DIR": str(env_dir)}
    result = runner.invoke(app, _fit_args(folder, "envpart"), env=env)
    assert result.exit_code == 0, result.output
    assert (env_dir / "envpart" / "profile.json").is_file()
    # the option wins over the environment
    result = runner.invoke(app, _fit_args(folder, "optpart", "--models-dir", str(opt_dir)), env=env)
    assert result.exit_code == 0, result.output
    assert (opt_dir / "optpart" / "profile.json").is_file() and not (env_dir / "optpart").exists()

    listed_env = runner.invoke(app, ["list"], env=env)
    assert listed_env.exit_code == 0 and listed_env.stdout.split() == ["envpart"]
    listed_opt = runner.invoke(app, ["list", "--models-dir", str(opt_dir)], env=env)
    assert listed_opt.stdout.split() == ["optpart"]
    # predict finds the profile through the environment variable too
    result = runner.invoke(app, ["predict", str(folder / "good_000.png"), "--product", "envpart"], env=env)
    assert result.exit_code == 0, result.output


def test_list_shows_products(fitted_cli, runner: CliRunner, tmp_path: Path):
    models, _good, _ = fitted_cli
    result = runner.invoke(app, ["list", "--models-dir", str(models)])
    assert result.exit_code == 0 and "widget" in result.stdout.split()
    empty = runner.invoke(app, ["list", "--models-dir", str(tmp_path / "none")])
    assert empty.exit_code == 0 and "no profiles" in empty.stdout


def test_version(runner: CliRunner):
    from inspect_app import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_unknown_mode_is_a_user_error(runner: CliRunner, tmp_path: Path):
    folder = ImageFactory(tmp_path, seed=15).folder("good", 2, size=CLI_SIZE)
    args = _fit_args(folder, "p", "--models-dir", str(tmp_path / "m"))
    args[args.index("--mode") + 1] = "bogus"
    _assert_user_error(runner.invoke(app, args), "unknown mode", "image-image")
    assert not (tmp_path / "m" / "p").exists()


def test_predict_in_a_mode_the_profile_lacks_says_how_to_refit(fitted_cli, runner: CliRunner):
    models, good, _ = fitted_cli
    result = runner.invoke(app, ["predict", str(good / "good_000.png"), "--product", "widget",
                                 "--models-dir", str(models), "--mode", "fused"])
    _assert_user_error(result, "refit")


def test_progress_on_a_log_file_is_lines_with_counts_and_eta():
    """Without a terminal a live bar shows nothing until a step ends; log lines come every 10 %."""
    from inspect_app.clikit import LogProgress

    lines, now = [], [0.0]
    progress = LogProgress(lines.append, every_seconds=30.0, clock=lambda: now[0])
    for done in range(0, 101):
        now[0] = done * 0.5
        progress(done, 100, "encoding good images")
    assert len(lines) == 11, lines  # 0 %, 10 %, ..., 100 %
    assert lines[0] == "encoding good images: 0/100 (0 %), 0:00:00 elapsed, ETA ?"
    assert lines[5] == "encoding good images: 50/100 (50 %), 0:00:25 elapsed, ETA 0:00:25"
    assert lines[-1].startswith("encoding good images: 100/100 (100 %), 0:00:50 elapsed, ETA 0:00:00")
    now[0] = 100.0
    progress(1, 1000, "slow step")
    now[0] = 140.0
    progress(2, 1000, "slow step")  # no new tenth, but 40 s since the last line
    assert lines[-1] == "slow step: 2/1000 (0 %), 0:00:40 elapsed, ETA 5:32:40"


def test_refit_all_after_a_format_change(runner: CliRunner, tmp_path: Path):
    """An upgrade that bumps the profile format strands no station: predict names the refit
    command, ``refit --all`` fits every product again from its recorded images, and predict works."""
    import json

    good = ImageFactory(tmp_path, seed=21).folder("good", 10, size=CLI_SIZE)
    models = tmp_path / "models"
    for product in ("alpha", "beta"):
        assert runner.invoke(app, _fit_args(good, product, "--models-dir", str(models))).exit_code == 0
    for product in ("alpha", "beta"):
        meta_path = models / product / "profile.json"
        meta = json.loads(meta_path.read_text())
        meta["format"] -= 1
        meta_path.write_text(json.dumps(meta))
    image = str(good / "good_000.png")
    stale = runner.invoke(app, ["predict", image, "--product", "alpha", "--models-dir", str(models)])
    _assert_user_error(stale, "format", "inspect-app refit alpha")
    result = runner.invoke(app, ["refit", "--all", "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    assert "refitting alpha (image-image) on 10 images from the recorded training images" in result.output
    assert "refitted beta" in result.output
    again = runner.invoke(app, ["predict", image, "--product", "alpha", "--models-dir", str(models)])
    assert again.exit_code == 0 and "PASS 1" in again.output


def test_refit_needs_one_product_or_all(runner: CliRunner, tmp_path: Path):
    _assert_user_error(runner.invoke(app, ["refit", "--models-dir", str(tmp_path)]), "one product", "--all")
    _assert_user_error(runner.invoke(app, ["refit", "ghost", "--models-dir", str(tmp_path)]), "no profile", "ghost")


def test_a_finished_line_command_ends_the_process_without_finalization(tmp_path):
    """``cli.main`` ends the process at once when a command asked for it (the line station, whose
    results are stored): a thread still busy (here a non-daemon one that would hold a normal exit
    for a minute; on a station the explainer loading weights in native code) cannot delay or abort
    the exit, and the exit code is kept. Without the request, nothing happens."""
    script = (
        "import threading, time\n"
        "from inspect_app.clikit import exit_at_once_when_done, finish_process\n"
        "finish_process(5)\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()\n"
        "print('stored', flush=False)\n"
        "exit_at_once_when_done()\n"
        "finish_process(3)\n")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert done.returncode == 3 and done.stdout == "stored\n" and time.monotonic() - start < 30
