"""Hugging Face Trainer with studio: report_to="studio".

A tiny BERT made from a config (nothing is downloaded) learns a toy task on random tokens.

    studio run --metric eval_loss:min hf_train.py
"""
import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import studio.integrations.transformers  # noqa: F401 - registers report_to="studio"


class Toy(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.ids = rng.integers(5, 50, size=(n, 12))
        self.labels = (self.ids[:, 0] > 27).astype(int)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": torch.tensor(self.ids[i]), "labels": torch.tensor(self.labels[i])}


config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2)
model = BertForSequenceClassification(config)
args = TrainingArguments(
    output_dir="hf-out", num_train_epochs=2, per_device_train_batch_size=16, learning_rate=5e-3,
    eval_strategy="epoch", save_strategy="epoch", logging_steps=4, report_to="studio",
    use_cpu=True, disable_tqdm=True, save_total_limit=1,
)
Trainer(model=model, args=args, train_dataset=Toy(128, 0), eval_dataset=Toy(32, 1)).train()
