"""Plain PyTorch, as a user would write it: the baseline of the speed benchmarks.

One ``nn.Module`` (the same architecture and initialisation as a run of ``seed``), ``torch.optim.SGD``
(momentum, Nesterov, weight decay, torch's default implementation), minibatches by indexing the training
tensor with a fresh permutation every epoch, and an evaluation (loss and accuracy on the full training and
test sets, ``torch.no_grad``) every ``eval_every`` steps and at the end. Nothing of the engine is used
but the data set loader and the model builder, so the timing is what a hand-written loop costs.

Rerun it by itself::

    python -m grawa_sim.bench.plain --model mlp --batch-size 512 --steps 2000 --eval-every 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

from grawa_sim.data.datasets import Dataset, load
from grawa_sim.models.registry import build


class PlainTrainer:
    """One model, ``torch.optim.SGD`` and a shuffled index walk over the training set."""

    def __init__(self, model: str = "mlp", batch_size: int = 32, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 1e-4, seed: int = 0, dataset: str = "mnist1d", data: Dataset | None = None):
        torch.manual_seed(seed)
        self.data = data if data is not None else load(dataset)
        self.model = build(model, self.data.input_shape, self.data.outputs)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum,
                                         nesterov=momentum > 0, weight_decay=weight_decay)
        self.batch_size = batch_size
        self._order = torch.randperm(len(self.data.y_train))
        self._cursor = 0

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.data.y_train)
        if self._cursor + self.batch_size > n:  # a new epoch: reshuffle, drop the last partial batch
            self._order, self._cursor = torch.randperm(n), 0
        index = self._order[self._cursor:self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return self.data.x_train[index], self.data.y_train[index]

    def steps(self, n: int) -> float:
        """``n`` SGD steps; the last minibatch loss."""
        self.model.train()
        loss = torch.zeros(())
        for _ in range(n):
            x, y = self._batch()
            loss = nn.functional.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the full training and test sets (eval mode)."""
        self.model.eval()
        row = {}
        for split in ("train", "test"):
            x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
            out = self.model(x)
            row[f"{split}_loss"] = float(nn.functional.cross_entropy(out, y))
            row[f"{split}_acc"] = float((out.argmax(-1) == y).float().mean())
        self.model.train()
        return row


def plain_run(model: str = "mlp", batch_size: int = 32, steps: int = 1000, eval_every: int = 100,
              seed: int = 0, dataset: str = "mnist1d") -> list[dict]:
    """A whole hand-written training run (data, model, optimiser, evaluations); its evaluation rows."""
    trainer = PlainTrainer(model, batch_size, seed=seed, dataset=dataset)
    rows = [{"step": 0, **trainer.evaluate()}]
    done = 0
    while done < steps:
        n = min(eval_every, steps - done)
        trainer.steps(n)
        done += n
        rows.append({"step": done, **trainer.evaluate()})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grawa_sim.bench.plain", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mlp")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    rows = plain_run(args.model, args.batch_size, args.steps, args.eval_every, args.seed)
    seconds = time.perf_counter() - start
    print(json.dumps({**rows[-1], "seconds": round(seconds, 3), "steps_per_s": round(args.steps / seconds, 1),
                      "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
