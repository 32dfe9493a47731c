"""Fault injection on smoke artifacts: every fault ends in one line that names the file and what to do,
or in a recovery, and no earlier good artifact is lost.

One ``python -m tinybert_lib run all --profile smoke`` builds the artifacts once; each test damages
its own copy (bit flips, truncations, a kill between renames, a write limit, a second run, Ctrl-C).
The predict command's and the data check's faults are in ``test_predict_cli.py`` and ``test_data_faults.py``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tinybert_lib as tl
from tinybert_lib import pipeline
from tinybert_lib.errors import ArtifactError
from tinybert_lib.lock import FolderBusyError, artifacts_lock
from tinybert_lib.teachers import TokenizerError, load_teacher, load_tokenizer, resolve_teacher_folder

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": "",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
ENV.pop("TINYBERT_DEBUG", None)
RUN = [sys.executable, "-m", "tinybert_lib", "run"]
SMOKE = ["--profile", "smoke", "--device", "cpu"]


def _cli(artifacts: Path, *args: str, timeout: int = 600, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *args, *SMOKE, "--artifacts", str(artifacts)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout, **popen)


def _last_line(done: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one line a fault must end in: no traceback, the given exit code."""
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return done.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Every stage of the smoke profile, built once (about two minutes on two cores)."""
    folder = tmp_path_factory.mktemp("faults") / "built"
    done = _cli(folder, "all")
    assert done.returncode == 0, done.stderr[-4000:]
    return folder


@pytest.fixture
def copy(built, tmp_path) -> Path:
    """A copy of the built artifacts to damage."""
    target = tmp_path / "artifacts"
    shutil.copytree(built, target)
    return target


def _flip(path: Path, start: int, count: int = 4000) -> None:
    data = bytearray(path.read_bytes())
    end = min(len(data), start + count)
    data[start:end] = bytes(b ^ 0xFF for b in data[start:end])
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as they were


def _tensor_data_start(path: Path) -> int:
    """Where a safetensors file's tensor bytes begin (after its 8-byte length and JSON header)."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --- 1. tokenizers -----------------------------------------------------------------------------


def _teacher_without_tokenizer(tmp_path: Path) -> Path:
    folder = tmp_path / "teacher"
    folder.mkdir()
    source = resolve_teacher_folder("minilm")
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(source / name, folder / name)
    return folder


def test_a_teacher_folder_without_tokenizer_is_refused_before_any_run(tmp_path):
    folder = _teacher_without_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match=r"has no tokenizer.*\[UNK\].*tokenizer\.json"):
        load_teacher(str(folder))
    problems = tl.preflight.missing_for(tl.get_profile("smoke", teacher=str(folder)))
    assert any(p.startswith("teacher: ") and str(folder) in p and "no tokenizer" in p for p in problems), problems


def test_a_tokenizer_of_another_size_is_refused(tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(resolve_teacher_folder("minilm"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 1000
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match=r"30522 tokens but config\.json's vocab_size is 1000"):
        load_tokenizer(folder)


def test_a_finished_stage_without_its_tokenizer_is_not_reused(copy):
    for name in ("tokenizer.json", "vocab.txt"):
        (copy / "general_student" / "model" / name).unlink(missing_ok=True)
    line = _last_line(_cli(copy, "general"))
    assert line.startswith("error: ") and "general_student/model has no tokenizer" in line, line


def test_predict_refuses_a_student_without_its_tokenizer(copy):
    model = copy / "task_step2" / "model"
    for name in ("tokenizer.json", "vocab.txt"):
        (model / name).unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "tinybert_lib", "predict", str(model), "a fine film"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
    line = _last_line(done)
    assert "no tokenizer" in line and str(model) in line and done.stdout == "", (line, done.stdout)


# --- 2. finished artifacts are verified on reuse ------------------------------------------------

FLIPPED_FILES = [
    ("general", "general_student/model/model.safetensors"),
    ("general", "general_student/projections.safetensors"),
    ("finetune", "teacher_sst2/model/model.safetensors"),
    ("intermediate", "task_step1/model/model.safetensors"),
    ("prediction", "task_step2/model/model.safetensors"),
]


@pytest.mark.parametrize("stage,relpath", FLIPPED_FILES, ids=[f for _, f in FLIPPED_FILES])
def test_flipped_bits_in_finished_weights_are_refused(copy, stage, relpath):
    path = copy / relpath
    size = path.stat().st_size
    _flip(path, _tensor_data_start(path) + 512, count=min(4000, size // 4))
    assert path.stat().st_size == size
    line = _last_line(_cli(copy, stage))
    assert line.startswith("error: ") and relpath in line and "--rebuild" in line, line
    assert "changed or damaged" in line, line


def test_flipped_bits_in_the_augmented_rows_are_refused(copy):
    arrow = next((copy / "augmented_sst2").glob("*.arrow"))
    _flip(arrow, arrow.stat().st_size // 2, count=200)
    line = _last_line(_cli(copy, "augment"))
    assert line.startswith("error: ") and "augmented_sst2" in line and "--rebuild" in line, line


# --- 3. damaged finished outputs are one line ---------------------------------------------------

TRUNCATED_FILES = [
    ("general", "general_student/model/model.safetensors"),
    ("general", "general_student/projections.safetensors"),
    ("general", "general_student/model/config.json"),
    ("general", "general_student/summary.json"),
    ("finetune", "teacher_sst2/model/model.safetensors"),
    ("prediction", "task_step2/summary.json"),
    ("augment", "augmented_sst2/dataset_info.json"),
    ("augment", "augmented_sst2/state.json"),
    ("augment", "augmented_sst2/tinybert_settings.json"),
    ("augment", "augmented_sst2/fingerprint.json"),
    ("augment", "augmented_sst2/data-00000-of-00001.arrow"),
]


@pytest.mark.parametrize("stage,relpath", TRUNCATED_FILES, ids=[f for _, f in TRUNCATED_FILES])
def test_truncated_finished_outputs_are_one_line_naming_the_file(copy, stage, relpath):
    _truncate(copy / relpath, keep=0.3)
    line = _last_line(_cli(copy, stage))
    assert line.startswith("error: ") and "--rebuild" in line, line
    folder = relpath.split("/")[0]
    assert relpath in line or (folder in line and relpath.endswith(".arrow")), line


def test_damaged_teacher_weights_are_one_error_naming_the_file(tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(resolve_teacher_folder("minilm"), folder)
    _truncate(folder / "model.safetensors", keep=0.2)
    with pytest.raises(ArtifactError, match=r"teacher.*damaged or unreadable.*good copy") as err:
        load_teacher(str(folder))
    assert "\n" not in str(err.value)


# --- 5. a kill between the two renames of an export ---------------------------------------------


@pytest.mark.parametrize("folder", ["task_step2", "task_step1", "teacher_sst2", "general_student"])
def test_a_model_parked_between_renames_is_put_back(copy, folder):
    before = load_file(str(copy / folder / "model" / "model.safetensors"))
    os.replace(copy / folder / "model", copy / folder / ".model.old")  # the kill: after the first rename
    (copy / folder / "summary.json").unlink()  # ... while the stage was still training (step 2's kept epoch)
    stage = {"task_step2": "prediction", "task_step1": "intermediate", "teacher_sst2": "finetune",
             "general_student": "general"}[folder]
    done = _cli(copy, stage)
    assert done.returncode == 0, done.stderr[-3000:]
    after = load_file(str(copy / folder / "model" / "model.safetensors"))
    assert not (copy / folder / ".model.old").exists()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# --- 7. one run per artifacts folder ------------------------------------------------------------

HOLD = ("import sys, time\nfrom tinybert_lib.lock import artifacts_lock\n"
        "with artifacts_lock(sys.argv[1]):\n    print('holding', flush=True)\n    time.sleep(120)\n")


def test_a_second_run_into_a_busy_folder_stops_naming_the_running_process(copy):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(copy)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        line = _last_line(_cli(copy, "general"))
        assert line.startswith("error: another run is using") and f"pid {holder.pid}" in line, line
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):  # a lesson in another process too
            pipeline.PipelineRun("smoke", copy, "cpu").general()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (kill -9 releases its lock): its stale lock file is taken over
    assert json.loads((copy / ".lock").read_text())["pid"] == holder.pid
    assert _cli(copy, "general").returncode == 0


def test_the_lock_is_released_on_errors_and_reentrant(copy):
    stale = tl.get_profile("smoke", general_lr=1e-3)
    with pytest.raises(tl.records.StaleArtifactError):
        pipeline.PipelineRun(stale, copy, "cpu").general()
    with artifacts_lock(copy):  # released by the failed stage; and a stage inside a held lock runs
        assert pipeline.PipelineRun("smoke", copy, "cpu").general().train.resumed_from > 0


# --- 9. a write failure mid-save, and 10. Ctrl-C ------------------------------------------------


def _stopped_at_step_2(tmp_path: Path, blocks: int | None = None) -> Path:
    """A general stage stopped after its step 2 checkpoint: what a long run leaves mid-way (``blocks``: a
    longer corpus than smoke's 64 blocks, for a run that is still training when it is interrupted)."""
    folder = tmp_path / "artifacts"
    script = ("import sys\nfrom tinybert_lib import get_profile, pipeline, training\n"
              f"profile = get_profile('smoke', corpus_max_blocks={blocks or 64})\n"
              "try:\n    pipeline.run_general_distillation(profile, sys.argv[1], 'cpu', stop_after=2)\n"
              "except training.Interrupted:\n    pass\n")
    done = subprocess.run([sys.executable, "-c", script, str(folder)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((folder / "general_student" / "checkpoint" / "state.json").read_text())["step"] == 2
    return folder


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_failed_save_keeps_the_previous_checkpoint_and_says_why(tmp_path):
    folder = _stopped_at_step_2(tmp_path)
    checkpoint = folder / "general_student" / "checkpoint"
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    done = _cli(folder, "general", preexec_fn=_limit_file_size(2**20))  # 1 MiB: the weights cannot be saved
    line = _last_line(done)
    assert line.startswith("error: ") and "while writing" in line and "general_student" in line, line
    assert "the previous checkpoint is intact" in line or "nothing was replaced" in line, line
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before  # the step-2 checkpoint, untouched
    assert not [p for p in (folder / "general_student").iterdir() if ".tmp-" in p.name]
    assert _cli(folder, "general").returncode == 0  # and the run goes on from it


def test_ctrl_c_is_one_line_and_the_rerun_resumes_to_the_same_weights(tmp_path):
    longer = ["--set", "corpus_max_blocks=512"]  # 32 steps: still training when Ctrl-C comes
    folder = _stopped_at_step_2(tmp_path, blocks=512)
    # SIGINT as a terminal delivers it, also when the tests themselves run in the background (a shell's
    # `&` makes them ignore SIGINT, and a Python started so never turns it into KeyboardInterrupt)
    run = subprocess.Popen([*RUN, "general", *SMOKE, *longer, "--artifacts", str(folder)], cwd=ROOT, env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("resuming at step 2" in line for line in lines):  # training has started again
        assert run.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.1)
    time.sleep(1.0)
    run.send_signal(signal.SIGINT)
    out = run.stdout.read()
    run.wait(timeout=300)
    reader.join(timeout=60)
    done = subprocess.CompletedProcess(run.args, run.returncode, out, "".join(lines))
    line = _last_line(done, code=130)
    assert line == ("interrupted during general distillation; rerun the same command to resume from step 2 "
                    "(its last checkpoint)."), line
    assert _cli(folder, "general", *longer).returncode == 0  # the same command goes on
    assert _cli(tmp_path / "uninterrupted", "general", *longer).returncode == 0
    a, b = (load_file(str(f / "general_student" / "model" / "model.safetensors"))
            for f in (folder, tmp_path / "uninterrupted"))
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run ended elsewhere than the uninterrupted one"


def test_debug_shows_the_traceback_behind_the_one_line(copy):
    _truncate(copy / "general_student" / "summary.json", keep=0.3)
    plain = _last_line(_cli(copy, "general"))
    assert plain.startswith("error: ") and "summary.json" in plain
    for extra, env in ((["--debug"], ENV), ([], {**ENV, "TINYBERT_DEBUG": "1"})):
        done = subprocess.run([*RUN, "general", *SMOKE, "--artifacts", str(copy), *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode != 0 and "Traceback" in done.stderr and "ArtifactError" in done.stderr, done.stderr[-2000:]


def test_a_full_disk_is_named_and_the_previous_checkpoint_stays(tmp_path, monkeypatch):
    import errno

    from tinybert_lib.checkpoints import Checkpoint
    from tinybert_lib.errors import WriteFailedError

    checkpoint = Checkpoint(tmp_path / "checkpoint")
    module = torch.nn.Linear(4, 2)
    checkpoint.save({"student": module}, {"step": 2})
    before = {p.name: p.read_bytes() for p in checkpoint.folder.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tinybert_lib.checkpoints.save_file", full_disk)  # the disk fills up mid-save
    with pytest.raises(WriteFailedError) as err:
        checkpoint.save({"student": module}, {"step": 4})
    message = str(err.value)
    assert message.startswith("no space left on device while writing ") and str(checkpoint.folder) in message
    assert "the previous checkpoint is intact" in message and "\n" not in message
    assert {p.name: p.read_bytes() for p in checkpoint.folder.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
