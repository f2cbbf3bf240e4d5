"""Train without the server's packages: ``python -m workers.training [--config FILE] [KEY=VALUE ...]``.

Each ``KEY=VALUE`` sets one ``TrainConfig`` field (the value is read as JSON when it parses, else
as a string), after the fields of ``--config`` (a JSON object, e.g. a run's ``config.json``);
``split=train|val|all`` fills ``names`` from the dataset's split. This entry point needs only torch,
numpy, OpenCV and tqdm, so it also runs where ``maskloop`` is not installed, and under ``torchrun``
for data-parallel training over several processes (the gradients are averaged, see ``loop.py``)::

    torchrun --standalone --nproc_per_node 4 -m workers.training dataset_dir=DATA split=train \\
        out_dir=runs/gpu device=cuda batch_size=8 num_workers=3 num_threads=2 time_budget_s=600
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from workers.training.config import TrainConfig
from workers.training.data import DatasetError, names_for_split


def parse_overrides(pairs: list[str]) -> dict:
    """``["steps=10", "device=cuda"]`` -> ``{"steps": 10, "device": "cuda"}``; raises ``ValueError``."""
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.training", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="JSON object of TrainConfig fields")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        fields = json.loads(args.config.read_text()) if args.config else {}
        fields.update(parse_overrides(args.overrides))
        split = fields.pop("split", None)
        if split is not None:
            fields["names"] = names_for_split(fields.get("dataset_dir", ""), split)
        cfg = TrainConfig.from_dict(fields)
        cfg.validate()
    except (OSError, ValueError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from workers.training.loop import train

    result = train(cfg)
    print(json.dumps({"model": result.model_path, "steps": result.steps, "wall_time_s": round(result.wall_time_s, 1),
                      "metrics": result.metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
