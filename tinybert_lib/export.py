"""Writing a course model as a standard Hugging Face folder that ``transformers`` loads.

Lessons: 09-11 (and 12, through ``deploy.ship``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .atomic import atomic_folder
from .bert import Bert

MEAN_POOLING_FILE = Path(__file__).with_name("hf_mean_pooling.py")
MEAN_POOLED_CLASS = "BertMeanPooledForSequenceClassification"
MEAN_POOLED_TYPE = "bert-mean-pooled"  # a model type transformers does not know: loading needs trust_remote_code


def export_hf(model: Bert, tokenizer, folder: str | Path) -> Path:
    """Save ``model`` + ``tokenizer`` as a Hugging Face folder (config.json, model.safetensors, tokenizer).

    A model with a classification head is written as ``BertForSequenceClassification`` (so
    ``transformers.pipeline("text-classification", model=folder)`` loads it); one without as
    ``BertModel``. A head that reads the mean over tokens (``classifier_pooling="mean"``) has no
    ``transformers`` class: its folder carries one (``hf_mean_pooling.py``), which ``transformers``
    loads with ``trust_remote_code=True`` (and refuses without it, rather than read the untrained [CLS]
    pooler). The folder is written beside its final place and renamed into it, so an
    interrupted export never leaves a half-written model behind.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    cfg = model.hf_config()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.num_labels == 0:
        cfg["architectures"] = ["BertModel"]
        state = {k.removeprefix("bert."): v for k, v in state.items()}
    mean_head = model.config.num_labels > 0 and model.config.classifier_pooling == "mean"
    if mean_head:  # transformers' own head reads [CLS]: ship the head this model was trained with
        cfg["architectures"], cfg["model_type"] = [MEAN_POOLED_CLASS], MEAN_POOLED_TYPE
        cfg["auto_map"] = {"AutoConfig": f"{MEAN_POOLING_FILE.stem}.BertMeanPooledConfig",
                           "AutoModelForSequenceClassification": f"{MEAN_POOLING_FILE.stem}.{MEAN_POOLED_CLASS}"}
    with atomic_folder(folder) as tmp:  # modes from the umask, not mkdtemp's 0700 / safetensors' 0600
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if mean_head:
            shutil.copyfile(MEAN_POOLING_FILE, tmp / MEAN_POOLING_FILE.name)
    return folder
