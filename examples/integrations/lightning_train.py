"""PyTorch Lightning with studio: one logger, nothing else changes.

    studio run --metric val_loss:min lightning_train.py --epochs 3
    python lightning_train.py                # also recorded (a workbook experiment)
"""
import argparse

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from studio.integrations.lightning import StudioLogger


class Regressor(L.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 8):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def data(n: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 2 - 1
    return DataLoader(TensorDataset(x, 3 * x - 1), batch_size=32)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=args.epochs, logger=StudioLogger(project="lightning"), log_every_n_steps=1,
        callbacks=[ModelCheckpoint(monitor="val_loss", dirpath="checkpoints")],
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(Regressor(lr=args.lr), data(256, 0), data(64, 1))
