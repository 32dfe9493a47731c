"""Writing a course model as a standard Hugging Face folder that ``transformers`` loads."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .bert import Bert


def export_hf(model: Bert, tokenizer, folder: str | Path) -> Path:
    """Save ``model`` + ``tokenizer`` as a Hugging Face folder (config.json, model.safetensors, tokenizer).

    A model with a classification head is written as ``BertForSequenceClassification`` (so
    ``transformers.pipeline("text-classification", model=folder)`` loads it); one without as
    ``BertModel``. The folder is written beside its final place and renamed into it, so an
    interrupted export never leaves a half-written model behind.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.hf_config()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.num_labels == 0:
        cfg["architectures"] = ["BertModel"]
        state = {k.removeprefix("bert."): v for k, v in state.items()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
