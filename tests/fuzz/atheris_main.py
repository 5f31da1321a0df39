"""The command line every atheris target here shares: `--seeds=DIR` writes the target's seed
inputs into DIR (the corpus libFuzzer starts from), every other argument goes to libFuzzer."""
from __future__ import annotations

import os

import atheris


def run(argv: list[str], seeds: list[bytes], target) -> None:
    args = []
    for a in argv:
        if a.startswith("--seeds="):
            d = a.split("=", 1)[1]
            os.makedirs(d, exist_ok=True)
            for n, seed in enumerate(seeds):
                with open(os.path.join(d, f"seed{n:02d}"), "wb") as f:
                    f.write(seed)
        else:
            args.append(a)
    atheris.Setup(args, target)
    atheris.Fuzz()
