"""Student presets and building a student that fits its teacher: randomly initialised (TinyBERT's
start), from the teacher's own layers (DistilBERT's), or a saved general student.

Lessons: 00-07, 11.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .bert import Bert, BertConfig
from .errors import CourseError
from .losses import layer_map
from .teachers import read_bert_folder

# Width/depth of each preset; vocabulary, heads and position/type tables come from the teacher.
STUDENT_PRESETS: dict[str, BertConfig] = {
    # Offline default for the all-MiniLM-L6-v2 teacher (6 layers, 384 wide, 12 heads):
    # half the layers (uniform mapping g(m) = 2m), half the width, the teacher's 12 heads.
    "minilm-3l-192d": BertConfig(hidden_size=192, num_hidden_layers=3, num_attention_heads=12, intermediate_size=768),
    # The paper's TinyBERT4 for a BERT-base teacher (12 layers, 768 wide, 12 heads): g(m) = 3m.
    "tinybert-4l-312d": BertConfig(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200),
    # The paper's TinyBERT6 (same width as BERT-base, half the layers).
    "tinybert-6l-768d": BertConfig(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
    # The MiniLM teacher's width with half its layers: the shape student_init="teacher" needs for it.
    "minilm-3l-384d": BertConfig(hidden_size=384, num_hidden_layers=3, num_attention_heads=12,
                                 intermediate_size=1536),
}
DEFAULT_STUDENT = "minilm-3l-192d"


def _student_config(preset_or_config: Union[str, BertConfig, dict], teacher: Optional[Bert] = None) -> BertConfig:
    """Resolve a preset name / config / dict and reconcile it with the teacher."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in STUDENT_PRESETS:
            raise ValueError(
                f"unknown student preset {preset_or_config!r}; valid presets: {', '.join(STUDENT_PRESETS)} "
                "(or pass a BertConfig)."
            )
        cfg, name = replace(STUDENT_PRESETS[preset_or_config]), preset_or_config
    elif isinstance(preset_or_config, dict):
        cfg, name = BertConfig.from_dict(preset_or_config), "custom"
    elif isinstance(preset_or_config, BertConfig):
        cfg, name = replace(preset_or_config), "custom"
    else:
        raise TypeError(f"build_student needs a preset name, a BertConfig or a dict, got {type(preset_or_config).__name__}.")
    if teacher is None:
        return cfg
    t = teacher.config
    if cfg.num_attention_heads != t.num_attention_heads:
        raise ValueError(
            f"teacher has {t.num_attention_heads} attention heads, student {name!r} has {cfg.num_attention_heads}: "
            "attention maps cannot be matched head by head; use a student with "
            f"{t.num_attention_heads} heads (hidden size a multiple of {t.num_attention_heads})."
        )
    if cfg.num_hidden_layers > t.num_hidden_layers:
        raise ValueError(
            f"student {name!r} has {cfg.num_hidden_layers} layers but the teacher only {t.num_hidden_layers}: "
            "each student layer needs its own teacher layer to learn from; use a shallower student."
        )
    # The same token ids must enter both models, so the student shares the teacher's tables' sizes.
    return replace(
        cfg,
        vocab_size=t.vocab_size,
        type_vocab_size=t.type_vocab_size,
        max_position_embeddings=min(cfg.max_position_embeddings, t.max_position_embeddings),
        pad_token_id=t.pad_token_id,
    )


def build_student(
    preset_or_config: Union[str, BertConfig, dict] = DEFAULT_STUDENT,
    teacher: Optional[Bert] = None,
    num_labels: Optional[int] = None,
) -> Bert:
    """A randomly initialised course model (TinyBERT students start from scratch).

    With ``teacher``, the vocabulary size, token-type and position tables follow the teacher
    and the head count is checked against it; the teacher's tokenizer is attached as
    ``student.tokenizer``. A student with a vocabulary different from the teacher's
    (when the config is given explicitly) is refused: the same token ids must enter both.
    """
    explicit_vocab = (
        preset_or_config.vocab_size if isinstance(preset_or_config, BertConfig)
        else preset_or_config.get("vocab_size") if isinstance(preset_or_config, dict) else None
    )
    if (teacher is not None and isinstance(preset_or_config, BertConfig)
            and explicit_vocab == BertConfig.vocab_size != teacher.config.vocab_size):
        # A BertConfig always carries a vocab_size: this one may be the default nobody chose.
        raise ValueError(
            f"the student's BertConfig has vocab_size={explicit_vocab}, BertConfig's default, but the teacher reads "
            f"{teacher.config.vocab_size} token ids: both models must read the same ones. Build the config with "
            f"BertConfig(..., vocab_size={teacher.config.vocab_size}), or pass a dict without vocab_size (it then "
            "follows the teacher), or use a preset name."
        )
    if teacher is not None and explicit_vocab is not None and explicit_vocab != teacher.config.vocab_size:
        raise ValueError(
            f"student vocabulary has {explicit_vocab} entries, the teacher's {teacher.config.vocab_size}: both "
            "models must read the same token ids; leave vocab_size to the teacher (use a preset, or set "
            f"vocab_size={teacher.config.vocab_size})."
        )
    cfg = _student_config(preset_or_config, teacher)
    if num_labels is not None:
        cfg.num_labels = num_labels
    if teacher is not None:  # the student's head reads what the teacher's head reads
        cfg.classifier_pooling = teacher.config.classifier_pooling
    student = Bert(cfg)
    if teacher is not None:
        student.tokenizer = teacher.tokenizer
    return student


class StudentInitError(CourseError, ValueError):
    """A student start (``Profile.student_init``) that cannot work with this teacher."""


#: What a student copied from the teacher's layers shares with it (besides the vocabulary, as every student).
_TEACHER_SHAPE = ("hidden_size", "num_attention_heads", "intermediate_size")


def _differences(student: BertConfig, teacher: BertConfig, names: tuple[str, ...]) -> list[str]:
    return [f"{n} {getattr(student, n)} (the teacher's: {getattr(teacher, n)})"
            for n in names if getattr(student, n) != getattr(teacher, n)]


def student_from_teacher_layers(teacher: Bert,
                                preset_or_config: Union[str, BertConfig, dict] = DEFAULT_STUDENT) -> Bert:
    """A student whose embeddings and layers are copies of the teacher's: layer m is teacher layer g(m).

    DistilBERT's start (every other layer of BERT-base), with the course's uniform mapping ``layer_map``:
    a 3-layer student of a 6-layer teacher takes layers 2, 4 and 6. Starting near the teacher rather than
    from random weights leaves distillation less to learn; the price is the teacher's width, head count
    and FFN size, only fewer layers (a :class:`StudentInitError` names what differs). The pooler keeps
    its fresh weights, as in :func:`build_student`.
    """
    name = preset_or_config if isinstance(preset_or_config, str) else "custom"
    shape = _student_config(preset_or_config)  # before build_student reconciles it with the teacher
    t = teacher.config
    differ = _differences(shape, t, _TEACHER_SHAPE)
    if differ:
        fits = [k for k, c in STUDENT_PRESETS.items()
                if not _differences(c, t, _TEACHER_SHAPE) and t.num_hidden_layers % c.num_hidden_layers == 0]
        example = f" (the preset {' or '.join(map(repr, fits))})" if fits else ""
        raise StudentInitError(
            f"student_init='teacher' copies the teacher's layers, so the student needs the teacher's shape; "
            f"student {name!r} has {', '.join(differ)}. Use a student of the teacher's width: "
            f"hidden_size={t.hidden_size}, num_attention_heads={t.num_attention_heads}, "
            f"intermediate_size={t.intermediate_size}, fewer layers{example}; or student_init='random'.")
    student = build_student(preset_or_config, teacher=teacher)  # which refuses another vocabulary
    student.config.layer_norm_eps = t.layer_norm_eps  # a copied layer normalises as it did in the teacher
    for module in student.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = t.layer_norm_eps
    embeddings = teacher.bert.embeddings.state_dict()
    rows = student.config.max_position_embeddings  # at most the teacher's (build_student)
    embeddings["position_embeddings.weight"] = embeddings["position_embeddings.weight"][:rows]
    with torch.no_grad():
        student.bert.embeddings.load_state_dict(embeddings)
        for m, g in enumerate(layer_map(student.config.num_hidden_layers, t.num_hidden_layers)):
            student.bert.encoder.layer[m].load_state_dict(teacher.bert.encoder.layer[g - 1].state_dict())
    return student


def load_general_student(folder: str | Path, teacher: Bert) -> Bert:
    """The saved general student in ``folder`` (an ``export_hf`` folder: another run's
    ``general_student/model``, or a released general TinyBERT), checked against ``teacher``.

    It must read the teacher's token ids (same vocabulary size) and match its attention head by head
    (same head count), and its depth must map onto the teacher's layers; otherwise one
    :class:`StudentInitError`. Any classification head is dropped (task distillation adds its own);
    the teacher's tokenizer is attached, as :func:`build_student` does.
    """
    folder = Path(folder).expanduser()
    student = read_bert_folder(folder, "give student_init the folder of a saved general student "
                                       "(config.json + model.safetensors)", num_labels=0)
    differ = _differences(student.config, teacher.config, ("vocab_size", "num_attention_heads"))
    if differ:
        raise StudentInitError(f"the general student in {folder} has {', '.join(differ)}: it must read "
                               "the teacher's token ids and match its attention maps head by head; give a "
                               "general student distilled from a teacher of the same vocabulary and head count.")
    try:
        layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    except ValueError as err:
        raise StudentInitError(f"the general student in {folder}: {err}") from None
    student.config.classifier_pooling = teacher.config.classifier_pooling  # as build_student does
    student.tokenizer = teacher.tokenizer
    student.source = str(folder)
    return student.eval()
