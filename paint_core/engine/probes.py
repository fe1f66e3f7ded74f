"""Linear probes on frozen features: what a model already knows of a task without fine-tuning it."""
from __future__ import annotations

import itertools
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.tasks import get_task
from .evaluation import image_features, materialize
from ..runtime import current_runtime
from .training import train_loop


def encode(encoder: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[N, D] features of an encoder without a text tower (the one batched forward pass)."""
    from .evaluation import run_batches
    return run_batches(encoder, images, encoder, batch_size)[0]


def linear_probe_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int, steps: int = 300,
                      lr: float = 1e-2, seed: int = 0) -> nn.Linear:
    """A linear head trained full-batch with Adam on frozen features (features standardised by the head's init)."""
    if len(labels) == 0:
        raise ValueError("no training examples for the linear probe")
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], n_classes).to(current_runtime().torch_device)  # where train_loop puts batches
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    train_loop(itertools.repeat((features, labels)), lambda b: F.cross_entropy(head(b[0]), b[1]), opt, steps,
               lambda step: lr, what="linear probe", progress=False)  # full batch, constant lr
    for p in head.parameters():
        p.requires_grad_(False)
    return head


@torch.no_grad()
def head_predictions(encoder: nn.Module, head: nn.Linear, images: torch.Tensor) -> torch.Tensor:
    """[N] classes a linear head on ``encoder``'s features predicts (on the CPU; each module on its own device)."""
    return head(encode(encoder, images).to(head.weight.device)).argmax(-1).cpu()


def head_accuracy(encoder: nn.Module, head: nn.Linear, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((head_predictions(encoder, head, images) == labels.cpu()).float().mean())


def linear_probe(model: torch.nn.Module, preprocess: Callable, task_name: str, n_train: int = 2000,
                 n_test: int | None = None) -> float:
    """Test accuracy of a logistic regression on frozen image features (train split -> test split)."""
    from sklearn.linear_model import LogisticRegression

    task = get_task(task_name)
    train = materialize(task.split("train", preprocess), n_train)
    test = materialize(task.split("test", preprocess), n_test)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(image_features(model, train.tensors[0]).numpy(), train.tensors[1].numpy())
    return float(clf.score(image_features(model, test.tensors[0]).numpy(), test.tensors[1].numpy()))
