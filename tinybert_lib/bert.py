"""A compact BERT encoder that exposes every internal TinyBERT distils.

Lessons: 00-01, 12 (and every other lesson runs it, through its teacher and student).

Read it top to bottom: config -> embeddings -> self-attention -> feed-forward -> layer ->
model -> loading a Hugging Face checkpoint. The weights use the same names as
``transformers.BertModel`` / ``BertForSequenceClassification`` so a checkpoint loads with a plain
``load_state_dict`` and a trained model saves back into the same format.

The one thing this model does that the usual implementations do not: every layer returns its
*raw* attention scores (A = Q K^⊤ / sqrt(d_k), before the padding mask and the softmax) next to the
probabilities, because TinyBERT's attention loss is defined on the raw scores.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


POOLINGS = ("cls", "mean")


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder (names as in Hugging Face's ``config.json``)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    num_labels: int = 0  # 0 = no classification head; 1 = regression
    # What the head reads: "cls" = BERT's pooler (dense + tanh on [CLS]); "mean" = the mean of the
    # last hidden states over real tokens, the sentence embedding a sentence-transformers encoder
    # such as all-MiniLM-L6-v2 was trained to give (its checkpoint has no pooler weights).
    classifier_pooling: str = "cls"
    # The head's class names, in label-id order (e.g. ("negative", "positive") for SST-2). They are
    # written as config.json's id2label, so that a pipeline answers in words, not LABEL_0/LABEL_1.
    label_names: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if self.classifier_pooling not in POOLINGS:
            raise ValueError(f"classifier_pooling {self.classifier_pooling!r}: use one of {', '.join(POOLINGS)}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}: each head needs an equal slice of the hidden state; "
                "pick a hidden size that is a multiple of the head count."
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BertConfig":
        """Build from a Hugging Face ``config.json`` dict, ignoring keys the course does not use."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "num_labels" not in d and "id2label" in d and "BertForSequenceClassification" in str(
            d.get("architectures", "")
        ):
            kwargs["num_labels"] = len(d["id2label"])
        names = [str(v) for _, v in sorted(d.get("id2label", {}).items(), key=lambda kv: int(kv[0]))]
        if names and names != [f"LABEL_{i}" for i in range(len(names))]:  # transformers' placeholders name nothing
            kwargs["label_names"] = tuple(names)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BertOutput:
    """Everything a forward pass computes that distillation needs.

    embeddings:        (batch, ℓ, d) output of the embedding layer E (= hidden_states[0]).
    hidden_states:     L+1 tensors (batch, ℓ, d): embedding output first, then each layer.
    attention_scores:  L tensors (batch, h, ℓ, ℓ): raw A = Q K^⊤/sqrt(d_k), before mask and softmax.
    attention_probs:   L tensors (batch, h, ℓ, ℓ): P, after the padding mask and the softmax.
    logits:            (batch, num_labels) when the model has a classification head, else None.

    L layers, h heads of width d_k = d/h, ℓ tokens (notation: README, "Notation").
    """

    embeddings: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    attention_scores: tuple[torch.Tensor, ...]
    attention_probs: tuple[torch.Tensor, ...]
    logits: Optional[torch.Tensor] = None


class Embeddings(nn.Module):
    """word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention returning its output, raw scores and probabilities."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (b, h, ℓ, d_k)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self._split_heads(self.query(x)), self._split_heads(self.key(x)), self._split_heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # what TinyBERT's L_att matches
        probs = torch.softmax(scores + additive_mask, dim=-1)  # padded keys get ~0 probability
        context = self.dropout(probs) @ v
        b, _, t, _ = context.shape
        return context.transpose(1, 2).reshape(b, t, -1), scores, probs


class AttentionOutput(nn.Module):
    """Output projection of attention, residual connection, post-LayerNorm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(context)) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = AttentionOutput(cfg)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        context, scores, probs = self.self(x, additive_mask)
        return self.output(context, x), scores, probs


class Intermediate(nn.Module):
    """First half of the feed-forward block: widen to d_ff and apply GELU."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        if cfg.hidden_act != "gelu":
            raise ValueError(f"hidden_act {cfg.hidden_act!r} is not supported; the course BERT uses 'gelu'.")
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, as BERT's "gelu"


class Output(nn.Module):
    """Second half of the feed-forward block: back to d, residual, post-LayerNorm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class Layer(nn.Module):
    """One Transformer layer: attention then feed-forward, each with residual + LayerNorm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, scores, probs = self.attention(x, additive_mask)
        return self.output(self.intermediate(a), a), scores, probs


class Encoder(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))


class Pooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence vector the classification head reads."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``hidden`` (b, ℓ, d) over each sequence's real tokens: (b, d)."""
    m = attention_mask[:, :, None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class BertBody(nn.Module):
    """The encoder proper (Hugging Face's ``BertModel``): embeddings, layers, pooler."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.pooler = Pooler(cfg)


class Bert(nn.Module):
    """BERT with an optional sequence-classification head, returning a :class:`BertOutput`.

    Parameter names match ``transformers.BertForSequenceClassification`` (``bert.*``,
    ``classifier.*``), so Hugging Face checkpoints load and export without renaming.
    The loaders set two attributes besides the weights: ``model.tokenizer``, the tokenizer that goes
    with them, and ``model.source``, the name or folder they were loaded from (augmentation looks
    there for a masked-LM head).
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.bert = BertBody(cfg)
        if cfg.num_labels > 0:
            self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
            self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)
        self.tokenizer: Any = None
        self.source: Optional[str] = None
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, identity LayerNorm.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def add_classifier(self, num_labels: int, pooling: Optional[str] = None,
                       label_names: Optional[Sequence[str]] = None) -> "Bert":
        """Attach a fresh classification head (e.g. to a pre-trained encoder before fine-tuning).

        ``pooling``: what the head reads, ``"cls"`` or ``"mean"`` (see ``BertConfig.classifier_pooling``).
        ``label_names``: the classes' names in label-id order, exported as ``id2label``.
        """
        if pooling is not None:
            if pooling not in POOLINGS:
                raise ValueError(f"pooling {pooling!r}: use one of {', '.join(POOLINGS)}.")
            self.config.classifier_pooling = pooling
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"{len(label_names)} label names {tuple(label_names)} for a head of {num_labels} labels: "
                             "give one name per label.")
        self.config.label_names = tuple(label_names) if label_names is not None else None
        self.config.num_labels = num_labels
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.classifier = nn.Linear(self.config.hidden_size, num_labels)
        self._init_weights(self.classifier)
        device = self.bert.embeddings.word_embeddings.weight.device
        self.classifier.to(device)
        self.dropout.train(self.training)  # a new module starts in training mode; follow the model's
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        num_layers: Optional[int] = None,
        skip_padding: bool = False,
        **_: Any,  # lets a collated batch (with e.g. ``labels``) be passed as ``model(**batch)``
    ) -> BertOutput:
        """``num_layers``: run only the first layers and no head (all a distillation target needs).

        ``skip_padding``: a faster path for a teacher without gradients (see
        ``_layers_on_real_tokens``): the same values at real tokens, zeros at padded ones.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.bert.embeddings(input_ids, token_type_ids)
        # 0 on real keys, a very negative number on padded keys, broadcast over heads and queries.
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        hidden, scores, probs = [x], [], []
        if skip_padding:
            hidden, scores, probs = _layers_on_real_tokens(self.bert.encoder.layer[:num_layers], x, attention_mask, additive_mask)
            x = hidden[-1]
        else:
            for layer in self.bert.encoder.layer[:num_layers]:
                x, s, p = layer(x, additive_mask)
                hidden.append(x)
                scores.append(s)
                probs.append(p)
        logits = None
        if self.config.num_labels > 0 and num_layers is None:
            pooled = self.bert.pooler(x) if self.config.classifier_pooling == "cls" else _mean_pool(x, attention_mask)
            logits = self.classifier(self.dropout(pooled))
        return BertOutput(hidden[0], tuple(hidden), tuple(scores), tuple(probs), logits)

    def num_parameters(self, encoder_only: bool = False) -> int:
        """Parameter count; ``encoder_only`` counts embeddings + Transformer layers only."""
        if encoder_only:
            modules = [self.bert.embeddings, self.bert.encoder]
            return sum(p.numel() for m in modules for p in m.parameters())
        return sum(p.numel() for p in self.parameters())

    # --- loading and saving Hugging Face folders -------------------------------------------

    @classmethod
    def from_folder(cls, folder: str | Path, num_labels: Optional[int] = None) -> "Bert":
        """Load a Hugging Face BERT folder (``config.json`` + ``model.safetensors``).

        Accepts checkpoints saved from ``BertModel`` (keys ``embeddings.*``) and from
        ``BertForSequenceClassification`` (keys ``bert.*``). Every shape is checked. With
        ``num_labels`` different from the checkpoint's, a fresh head is attached.
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, weights_path = folder / "config.json", folder / "model.safetensors"
        if not cfg_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a BERT checkpoint folder: it needs config.json and model.safetensors "
                "(the course loads safetensors only; convert a pytorch_model.bin with "
                "transformers' save_pretrained(safe_serialization=True))."
            )
        raw = json.loads(cfg_path.read_text())
        if raw.get("model_type", "bert") not in ("bert", "bert-mean-pooled"):  # the second: export.py's mean-pooled head
            raise ValueError(f"{folder} holds a {raw.get('model_type')!r} model; the course needs a BERT checkpoint.")
        cfg = BertConfig.from_dict(raw)
        state = load_file(str(weights_path))
        state = {k if k.startswith(("bert.", "classifier.")) else f"bert.{k}": v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.endswith("position_ids") and not k.startswith(("cls.", "bert.cls."))}
        has_head = "classifier.weight" in state
        # The weights, not config.json's label count, say whether there is a head.
        cfg.num_labels = state["classifier.weight"].shape[0] if has_head else 0
        if num_labels is not None and num_labels != cfg.num_labels:
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
            cfg.num_labels, cfg.label_names, has_head = num_labels, None, False
        model = cls(cfg)
        expected = model.state_dict()
        for k, v in state.items():
            if k not in expected:
                raise ValueError(f"unexpected weight {k} in {weights_path}: is this a BERT checkpoint?")
            if expected[k].shape != v.shape:
                raise ValueError(f"shape mismatch for {k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k].shape)}")
        missing = [k for k in expected if k not in state and not (k.startswith("classifier.") and not has_head)]
        if any(not k.startswith("bert.pooler.") for k in missing):
            raise ValueError(f"{weights_path} lacks weights the model needs: {missing[:5]} ...")
        model.load_state_dict(state, strict=False)  # pooler may be absent; it then keeps its init
        return model

    def hf_config(self) -> dict[str, Any]:
        """A ``config.json`` dict that ``transformers`` reads as a BertForSequenceClassification."""
        cfg = self.config.to_dict()
        n = max(cfg.pop("num_labels"), 1)
        names = cfg.pop("label_names") or [f"LABEL_{i}" for i in range(n)]
        if len(names) != n:  # a head replaced after the names were set: its names are unknown
            names = [f"LABEL_{i}" for i in range(n)]
        cfg.update(
            model_type="bert",
            architectures=["BertForSequenceClassification"],
            position_embedding_type="absolute",
            num_labels=n,
            id2label={str(i): name for i, name in enumerate(names)},
            label2id={name: i for i, name in enumerate(names)},
        )
        if n == 1:
            cfg["problem_type"] = "regression"
        return cfg


# --- a faster path for the teacher (``Bert.forward(..., skip_padding=True)``) ---------------


def _layers_on_real_tokens(layers: nn.ModuleList, x: torch.Tensor, attention_mask: torch.Tensor,
                           additive_mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The layers of ``Layer.forward``, with every linear map on the real tokens only.

    A random batch of SST-2 sentences is two-thirds padding, and the linear maps (nearly all of
    a layer's work) treat each token on its own: they can run on the real tokens packed into
    (n_real, d) rows. Only the attention scores need the (batch, ℓ) grid, so q, k and v are put
    back on it (zeros at padding) for that one product. Real tokens get the values of the
    padded computation (to float rounding); padded positions of hidden states and of the scores
    are 0, so only a consumer that ignores padding may use them, as the masked losses do.
    No dropout is applied: meant for a teacher in eval mode.
    """
    b, t, width = x.shape
    real = attention_mask.reshape(-1).nonzero().squeeze(1)  # flat indices of real tokens

    def on_grid(rows: torch.Tensor) -> torch.Tensor:  # (n_real, d) -> (b, ℓ, d), zeros at padding
        return rows.new_zeros(b * t, rows.shape[-1]).index_copy_(0, real, rows).view(b, t, -1)

    hidden, scores, probs = [x], [], []
    x = x.reshape(b * t, width).index_select(0, real)
    for layer in layers:
        att = layer.attention.self
        q, k, v = (att._split_heads(on_grid(proj(x))) for proj in (att.query, att.key, att.value))
        s = q @ k.transpose(-1, -2) / math.sqrt(att.head_dim)  # as SelfAttention.forward
        p = torch.softmax(s + additive_mask, dim=-1)
        context = (p @ v).transpose(1, 2).reshape(b * t, width).index_select(0, real)
        a = layer.attention.output(context, x)
        x = layer.output(layer.intermediate(a), a)
        hidden.append(on_grid(x))
        scores.append(s)
        probs.append(p)
    return hidden, scores, probs
