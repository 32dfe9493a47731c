"""Student presets and building a randomly initialised student that fits its teacher.

Lessons: 00-07, 11.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Union

from .bert import Bert, BertConfig

# Width/depth of each preset; vocabulary, heads and position/type tables come from the teacher.
STUDENT_PRESETS: dict[str, BertConfig] = {
    # Offline default for the all-MiniLM-L6-v2 teacher (6 layers, 384 wide, 12 heads):
    # half the layers (uniform mapping g(m) = 2m), half the width, the teacher's 12 heads.
    "minilm-3l-192d": BertConfig(hidden_size=192, num_hidden_layers=3, num_attention_heads=12, intermediate_size=768),
    # The paper's TinyBERT4 for a BERT-base teacher (12 layers, 768 wide, 12 heads): g(m) = 3m.
    "tinybert-4l-312d": BertConfig(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200),
    # The paper's TinyBERT6 (same width as BERT-base, half the layers).
    "tinybert-6l-768d": BertConfig(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
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
