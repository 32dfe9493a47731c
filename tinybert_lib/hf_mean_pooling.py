"""A BERT classifier whose head reads the mean of the last hidden states over real tokens.

Tooling: not taught (shipped beside every exported mean-pooled model).

``transformers`` has no such head: the course's ``export_hf`` copies this file beside a model
built with ``classifier_pooling="mean"`` and names it in ``config.json`` (``auto_map``), under a
model type of its own. ``transformers`` then loads it with ``trust_remote_code=True``, and
without that flag refuses the folder, instead of silently reading the [CLS] pooler that the
weights were never trained with.
"""

import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput


class BertMeanPooledConfig(BertConfig):
    model_type = "bert-mean-pooled"


class BertMeanPooledForSequenceClassification(BertForSequenceClassification):
    config_class = BertMeanPooledConfig

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask[:, :, None].to(hidden.dtype)
        logits = self.classifier(self.dropout((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
