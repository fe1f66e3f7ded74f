"""Mutation fuzz of the safe checkpoint reader: every damaged file must be read or refused, never crash.

    python scripts/fuzz_convert.py [--files 3000] [--seed 0]

Seeds: a torch.save zip state dict, the same in torch's legacy format, and a pickle.dump of a module (as
PAINT writes). Each file gets 1-8 random byte flips, deletions or insertions. Prints how many were read,
refused (UnsafePickleError, which `convert` reports as one line) or ended in any other exception (a bug).
"""
from __future__ import annotations

import argparse
import collections
import io
import pickle
import random

import open_clip
import torch

from paint_core.io.safe_pickle import UnsafePickleError, read_objects_from_bytes
from paint_core.models.clip import register_embedded_configs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000, help="mutated files to try")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    args = ap.parse_args()
    register_embedded_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("micro-rn-s", pretrained=None)
    seeds = []
    for zip_format in (True, False):
        buf = io.BytesIO()
        torch.save(dict(list(model.state_dict().items())[:6]), buf, _use_new_zipfile_serialization=zip_format)
        seeds.append(buf.getvalue())
    seeds.append(pickle.dumps(model.visual.attnpool))
    rng = random.Random(args.seed)
    outcome: collections.Counter = collections.Counter()
    for _ in range(args.files):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            r = rng.random()
            if r < 0.5:
                data[pos] = rng.randrange(256)
            elif r < 0.75:
                del data[pos:pos + rng.randint(1, 50)]
            else:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        try:
            read_objects_from_bytes(bytes(data))
            outcome["read"] += 1
        except UnsafePickleError:
            outcome["refused"] += 1
        except Exception as e:  # noqa: BLE001 - counting what escapes is the point
            outcome[f"other: {type(e).__name__}"] += 1
    print(dict(outcome))


if __name__ == "__main__":
    main()
