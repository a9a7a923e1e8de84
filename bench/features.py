"""Benchmark: the feature rule's extraction loop against the bare network.

Three timings on the same simulated fields, in one run:
  rule   - features.extract_plate, as the extract_features rule runs it (TIFF reading in a
           prefetch thread, batching, normalization, pooling);
  raw    - the same FieldEmbedder called on batches already in memory (no I/O);
  single - one grey image (one channel of one field) per forward pass.
Prints images/s and the ratios rule/raw (goal >= 0.8) and rule/single.

  python bench/features.py [--fields 32] [--size 256 256] [--batch 0] [--threads 2] [--backbone efficientnet_lite0]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from morphoprof import features, illumination, images, simulate, workflow  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=0, help="fields per forward pass; 0: the rule's default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = workflow.pick_device()
    args.batch = args.batch or features.default_batch_size(device)
    channels = list(simulate.CHANNELS)
    params = simulate.ScreenParams(plates=1, batches=1, moas=1, sites=args.fields, height=args.size[0],
                                   width=args.size[1], blank_fraction=0, debris_fraction=0)
    with tempfile.TemporaryDirectory() as folder:
        ids, stacks = [], []
        for i, (_, raw, _) in zip(range(args.fields), simulate.simulate_plate(params, "SIM01")):
            stack = np.stack([illumination.to_uint16(illumination.rescale(p, 100, 20000)) for p in raw.astype(np.float32)])
            images.write_tiff(images.corrected_path(folder, f"f{i}"), stack)
            ids.append(f"f{i}")
            stacks.append(illumination.from_uint16(stack))
        embedder = features.FieldEmbedder(features.load_backbone(args.backbone), device)
        embedder(np.stack(stacks[: args.batch]))  # warm-up

        def timed(run):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        rule = timed(lambda: features.extract_plate(folder, ids, channels, embedder, batch_size=args.batch))
        preloaded = [np.stack(b) for b in features.batched(stacks, args.batch)]
        raw = timed(lambda: [embedder(b) for b in preloaded])
        single = timed(lambda: [embedder(s[c:c + 1][None]) for s in stacks for c in range(len(channels))])
    n_images = args.fields * len(channels)
    print(f"{args.backbone} on {device}, {args.fields} fields x {len(channels)} channels of {args.size[0]}x{args.size[1]}, "
          f"batch {args.batch} fields, {args.threads} threads")
    for name, seconds in [("rule loop", rule), ("raw forward", raw), ("one image at a time", single)]:
        print(f"  {name:20s} {n_images / seconds:8.1f} images/s")
    print(f"rule / raw forward:         {raw / rule:.2f}x  (goal >= 0.8)")
    print(f"rule / one image at a time: {single / rule:.2f}x")


if __name__ == "__main__":
    main()
