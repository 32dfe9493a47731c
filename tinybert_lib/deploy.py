"""Shipping a classifier to a CPU: ONNX export, ONNX Runtime, int8 quantization, and measuring it all (lesson 12).

Lessons: 12.

One folder per shipped model holds every variant beside the Hugging Face export::

    deploy/student/
      config.json, model.safetensors, tokenizer files   fp32 PyTorch (``export_hf``)
      model.onnx                                        fp32 ONNX graph
      model_int8.onnx                                   ONNX Runtime's dynamic int8 quantization
      model_int8.pt                                     PyTorch's dynamic int8 (``nn.Linear`` only)

``ship(model, folder, onnx_only=True)`` writes the two ONNX graphs, a stock ``config.json``
(``model_type: "bert"``, the class names) and the tokenizer only: no weights for PyTorch and no
Python file, so nothing in it needs ``transformers``' ``trust_remote_code``, whatever head the
model has (the head is in the graph).

``load_classifier`` opens any variant of such a folder as a function from a tokenised batch
to logits, which ``python -m tinybert_lib predict`` and ``compare_variants`` use.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from .atomic import atomic_file, atomic_folder
from .bert import Bert, BertConfig
from .errors import CourseError
from .export import export_hf
from .teachers import load_tokenizer

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model_int8.onnx"
TORCH_INT8_FILE = "model_int8.pt"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
VARIANTS = ("pytorch fp32", "pytorch int8", "onnx fp32", "onnx int8")
ONNX_ONLY_VARIANTS = ("onnx fp32", "onnx int8")


class DeploymentError(CourseError, RuntimeError):
    """A shipped model that is missing, incomplete or unreadable; the message says how to rebuild it."""


class LogitsOnly(nn.Module):
    """The classifier as ONNX sees it: three integer tensors in, logits out (``Bert`` returns more)."""

    def __init__(self, model: Bert) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask, token_type_ids).logits


# --- writing the variants -------------------------------------------------------------------


def _export_onnx(model: Bert, path: str | Path, opset: int = 18) -> Path:
    """Trace ``model`` into an ONNX graph whose batch size and sequence length stay free."""
    if model.config.num_labels == 0:
        raise ValueError("ONNX export needs a classifier (a model with a head); this one returns no logits.")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # the exporter's notes on absent torchvision ops
    model = model.eval().cpu()
    example = model.tokenizer(["a first sentence", "and a second, longer one"], padding=True, return_tensors="pt")
    args = tuple(example[k] for k in INPUTS)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    path = Path(path)
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LogitsOnly(model), args, str(tmp), input_names=list(INPUTS), output_names=["logits"],
                          dynamic_shapes=tuple({0: batch, 1: seq} for _ in INPUTS), opset_version=opset,
                          dynamo=True, external_data=False, verbose=False)
    return path


def _quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """ONNX Runtime's dynamic quantization: int8 weights for every MatMul and Gather (the embedding tables)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst = Path(dst)
    with atomic_file(dst) as tmp:
        prepared = tmp.with_name(tmp.name + ".pre")  # shapes inferred and the graph folded first, as ONNX Runtime advises
        try:
            quant_pre_process(str(src), str(prepared))
            quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8)
        finally:
            prepared.unlink(missing_ok=True)
    return dst


def quantize_torch(model: nn.Module) -> nn.Module:
    """PyTorch's dynamic quantization of a copy of ``model``: every ``nn.Linear`` becomes int8; embeddings stay fp32."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's eager quantization announces its move to torchao; it still works
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(copy.deepcopy(model).eval().cpu(), {nn.Linear}, dtype=torch.qint8)
    quantized.tokenizer = getattr(model, "tokenizer", None)
    return quantized


def ship(model: Bert, folder: str | Path, onnx_only: bool = False) -> Path:
    """Write all four variants of ``model`` into ``folder``, or with ``onnx_only`` its two ONNX ones only.

    An ONNX-only folder (see the module docstring) is for teams that forbid ``trust_remote_code``:
    a mean-pooled head's full export needs it, its ONNX graphs do not.
    """
    if onnx_only:
        return _ship_onnx_only(model, folder)
    folder = export_hf(model, model.tokenizer, folder)
    _export_onnx(model, folder / ONNX_FILE)
    _quantize_onnx(folder / ONNX_FILE, folder / ONNX_INT8_FILE)
    with atomic_file(folder / TORCH_INT8_FILE) as tmp:
        torch.save(quantize_torch(model).state_dict(), tmp)  # for its size on disk; load_classifier re-quantizes
    return folder


def _ship_onnx_only(model: Bert, folder: str | Path) -> Path:
    """config.json (stock ``bert``), tokenizer files, model.onnx and model_int8.onnx: nothing else."""
    if model.config.num_labels == 0:
        raise ValueError("ONNX export needs a classifier (a model with a head); this one returns no logits.")
    # hf_config is BertForSequenceClassification's config whatever the pooling; the pooling the graph
    # computes stays recorded in its classifier_pooling key, which transformers keeps but never reads.
    config = model.hf_config()
    with atomic_folder(folder) as tmp:  # a half-written folder never replaces a complete one
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        _export_onnx(model, tmp / ONNX_FILE)
        _quantize_onnx(tmp / ONNX_FILE, tmp / ONNX_INT8_FILE)
    return Path(folder)


def variant_file(folder: str | Path, variant: str) -> Path:
    """The file that holds ``variant`` in a shipped folder."""
    files = {"pytorch fp32": "model.safetensors", "pytorch int8": TORCH_INT8_FILE, "onnx fp32": ONNX_FILE, "onnx int8": ONNX_INT8_FILE}
    if variant not in files:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}.")
    return Path(folder) / files[variant]


# --- reading them back ----------------------------------------------------------------------

Classifier = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass
class Loaded:
    """A shipped variant, ready to run: ``run(batch) -> logits``, its tokenizer and label names."""

    run: Classifier
    tokenizer: Any
    labels: tuple[str, ...]
    variant: str


def _require(path: Path, how: str) -> Path:
    if not path.is_file():
        raise DeploymentError(f"{path} is missing: {how}")
    return path


def _onnx_session(path: str | Path, threads: Optional[int] = None):
    """An ONNX Runtime CPU session on ``path``; a corrupt or truncated file is a ``DeploymentError``."""
    import onnxruntime as ort

    path = _require(Path(path), "export it with tinybert_lib.deploy.ship (lesson 12).")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()  # the same thread count as PyTorch's
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime raises its own exception types, one per kind of damage
        raise DeploymentError(f"ONNX Runtime cannot read {path} ({type(err).__name__}: {str(err)[:200]}); the file is "
                              "corrupt or incomplete: export it again with tinybert_lib.deploy.ship (lesson 12).") from err


def load_classifier(folder: str | Path, onnx: bool = False, int8: bool = False, threads: Optional[int] = None) -> Loaded:
    """Open one variant of a shipped (or plain exported) folder as ``run(batch) -> logits``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeploymentError(f"{folder} is not a folder: give a model folder written by export_hf or tinybert_lib.deploy.ship.")
    variant = f"{'onnx' if onnx else 'pytorch'} {'int8' if int8 else 'fp32'}"
    _require(folder / "config.json", "the folder is not an exported model; write it with export_hf or tinybert_lib.deploy.ship.")
    if not _config_has_head(_read_config(folder)):
        raise _no_head(folder)
    if onnx:
        session = _onnx_session(_require(variant_file(folder, variant), "export it with tinybert_lib.deploy.ship (lesson 12)."), threads)

        def run(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            feed = {k: batch[k].numpy() if k in batch else torch.zeros_like(batch["input_ids"]).numpy() for k in INPUTS}
            return torch.from_numpy(session.run(["logits"], feed)[0])
    else:
        from safetensors import SafetensorError

        if not (folder / "model.safetensors").is_file() and (folder / ONNX_FILE).is_file():
            raise DeploymentError(f"{folder} was shipped ONNX-only (no PyTorch weights): open it with "
                                  "onnx=True (python -m tinybert_lib predict FOLDER --onnx), or ship "
                                  "the model again without onnx_only for the PyTorch variants.")
        try:
            model = Bert.from_folder(folder).eval()
        except (OSError, ValueError, SafetensorError) as err:
            raise DeploymentError(f"cannot load the PyTorch model in {folder}: {err}") from err
        if model.config.num_labels == 0:  # config.json may claim a head its weights lack; the weights decide
            raise _no_head(folder)
        if int8:
            model = quantize_torch(model)
        if threads:
            torch.set_num_threads(threads)

        def run(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.inference_mode():
                return model(**batch).logits
    return Loaded(run, _tokenizer(folder), _labels(folder), variant)


def _tokenizer(folder: Path):
    try:
        return load_tokenizer(folder)
    except CourseError as err:  # no tokenizer files, or another model's: already one line that says what to do
        raise DeploymentError(str(err)) from err
    except (OSError, ValueError) as err:
        raise DeploymentError(f"{folder} has no usable tokenizer ({err}); export the model with its tokenizer "
                              "(export_hf(model, tokenizer, folder)).") from err


def _read_config(folder: Path) -> dict[str, Any]:
    """config.json as a dict; a damaged file is a ``DeploymentError``, not a JSON traceback."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DeploymentError(f"cannot read {folder / 'config.json'} ({err}); export the model again with "
                              "export_hf or tinybert_lib.deploy.ship.") from err
    if not isinstance(config, dict):
        raise DeploymentError(f"{folder / 'config.json'} is not a model configuration (a JSON object); "
                              "export the model again with export_hf or tinybert_lib.deploy.ship.")
    return config


def _config_has_head(config: dict[str, Any]) -> bool:
    """False when config.json says the model has no classification head (a plain encoder).

    export_hf writes a headless model as ``architectures: ["BertModel"]`` (with transformers'
    placeholder ``num_labels: 1``), so the architecture, not the label count, tells; a config that
    names no architecture is given the benefit of the doubt (the PyTorch path checks the weights).
    """
    if config.get("num_labels") == 0:
        return False
    architectures = config.get("architectures") or []
    return not architectures or any(str(a).endswith("ForSequenceClassification") for a in architectures)


def _no_head(folder: Path) -> DeploymentError:
    return DeploymentError(f"{folder} has no classification head (a pre-trained encoder or a "
                           "general-distillation student), so it cannot classify: give a task-distilled "
                           "student or a fine-tuned teacher (e.g. build/cpu/artifacts/task_step2/model).")


def _labels(folder: Path) -> tuple[str, ...]:
    """The class names in config.json (``id2label``), in label-id order."""
    config = BertConfig.from_dict(_read_config(folder))  # the parser export_hf's reader uses
    return config.label_names or tuple(f"LABEL_{i}" for i in range(max(config.num_labels, 2)))


def predict(loaded: Loaded, texts: Sequence[str], max_length: int = 64) -> list[tuple[str, float]]:
    """(label, probability) for each text."""
    batch = loaded.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    probs = torch.softmax(loaded.run(dict(batch)).float(), dim=-1)
    return [(loaded.labels[i], p[i].item()) for p, i in zip(probs, probs.argmax(-1).tolist())]


# --- measuring them side by side ------------------------------------------------------------


def median_seconds(call: Callable[[], Any], warmup: int = 5, repeats: int = 30) -> float:
    """Median wall time of ``call()`` after ``warmup`` untimed calls (the first calls pay for allocation and caches)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dev_accuracy(loaded: Loaded, sentences: Sequence[str], labels: Sequence[int], batch_size: int = 64,
                 max_length: int = 64) -> float:
    """Share of ``sentences`` whose arg-max prediction is the label."""
    correct = 0
    for i in range(0, len(sentences), batch_size):
        batch = loaded.tokenizer(list(sentences[i:i + batch_size]), padding=True, truncation=True,
                                 max_length=max_length, return_tensors="pt")
        correct += (loaded.run(dict(batch)).argmax(-1) == torch.tensor(labels[i:i + batch_size])).sum().item()
    return correct / len(sentences)


def _measure(loaded: Loaded, file: Path, sentences: Sequence[str], labels: Sequence[int],
             batch_sizes: Sequence[int] = (1, 32), repeats: int = 30) -> dict[str, Any]:
    """Size on disk, median latency per batch size (and throughput at the largest), dev accuracy."""
    row: dict[str, Any] = {"variant": loaded.variant, "size_mb": file.stat().st_size / 2**20}
    for bs in batch_sizes:
        batch = dict(loaded.tokenizer(list(sentences[:bs]), padding=True, return_tensors="pt"))
        seconds = median_seconds(lambda: loaded.run(batch), repeats=repeats)
        row[f"latency_b{bs}_ms"] = seconds * 1000
        row[f"throughput_b{bs}"] = bs / seconds
    row["accuracy"] = dev_accuracy(loaded, sentences, labels)
    return row


def compare_variants(folders: dict[str, str | Path], sentences: Sequence[str], labels: Sequence[int],
                     variants: Sequence[str] = VARIANTS, threads: Optional[int] = None, repeats: int = 30) -> list[dict[str, Any]]:
    """One row per (model, variant): every shipped model in every variant, measured in one run, one thread count."""
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    for model_name, folder in folders.items():
        for variant in variants:
            onnx, int8 = variant.startswith("onnx"), variant.endswith("int8")
            loaded = load_classifier(folder, onnx=onnx, int8=int8, threads=threads)
            row = _measure(loaded, variant_file(folder, variant), sentences, labels, repeats=repeats)
            rows.append({"model": model_name, **row, "threads": threads})
    return rows
