"""resnet-cifar models: every registered model with its parameters and multiply-adds."""

from __future__ import annotations

import argparse

from resnet_cifar.cli.common import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the models with params and MMACs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet_cifar.models import get_model_entry, list_models, model_complexity

    rows = []
    for name in list_models():
        params, macs = model_complexity(name)
        rows.append({"name": name, "params": params, "macs": macs, "mmacs": round(macs / 1e6, 2),
                     "description": get_model_entry(name).description})
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params':>10}  {'MMACs':>8}  description")
    for r in rows:
        # from the exact count: rounding the 2-decimal figure again turns 125.748 into 125.8
        print(f"{r['name']:<{width}}  {r['params']:>10,}  {r['macs'] / 1e6:>8.1f}  "
              f"{r['description']}")
    return 0
