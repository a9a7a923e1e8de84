"""Benchmark: each GPU stage's rule code path against its bare network, on whatever device is present.

Simulated BBBC021-sized fields (1024x1280, about 150 nuclei) are written as corrected stacks, then,
in one run, for each stage:
  segmentation   - segmentation.segment_plate as the segment_plate rule runs it (stacks read ahead,
                   the network on batches of fields, masks, label TIFFs and measurements in worker
                   processes) against the bare Cellpose U-Net on the same tiles, preloaded on the device;
  whole field    - features.extract_plate with whole-field embeddings only, against the bare network
                   on the same fields preloaded on the device;
  single cell    - features.extract_plate with single-cell embeddings only (crops at the nuclei the
                   segmentation stage found), against the bare network on the same crops preloaded;
  null network   - features.extract_plate with a network that only averages its input: the data path's
                   own rate (reading, upload, conversion, normalization), also per core; and
                   segmentation.network_flows with a U-Net that returns zeros: the rate of everything
                   around Cellpose's network (scaling, resizing, padding, flows back to the host).
Prints fields/s of both, their ratio, the GPU's utilization during the rule's run (NVML through
torch, else nvidia-smi), the rate of mask computation per core (the rule spreads it over its
workers), and the goals. The Cellpose model is the small U-Net the workflow trains,
trained here on the simulated nuclei unless --model names one.

With --profile DIR, each stage's rule path runs once more, untimed, under cProfile (where the main
thread spends its time: waiting on readers, converting, synchronizing) and torch's profiler (which
operators take the host's and the device's time), and each stage's two tables go to
DIR/<stage>.txt: where the rule loses to its bare network, read from one run on a GPU node.

  python bench/stages.py [--fields 16] [--size 1024 1280] [--cells 7.5] [--threads N] [--model PATH]
                         [--profile DIR]
"""

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from morphoprof import features, images, jobs, measurement, metadata, screen, segmentation, simulate

SETTINGS = screen.segmentation_settings(  # the shipped config's, as the segment_plate rule gets them
    yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
)


class ChannelMeans(nn.Module):
    """A null network: each image's mean per input channel, so only the data path is timed."""

    def forward(self, x):
        return x.mean((2, 3))


class NullUNet(nn.Module):
    """A null Cellpose network: zero flows and probabilities of the input's size, so only what
    surrounds the network is timed."""

    def __init__(self, net):
        super().__init__()
        self.nout, self.device, self.mkldnn = net.nout, net.device, False

    def forward(self, x):
        return x[:, :1].expand(-1, self.nout, -1, -1) * 0, x.new_zeros((len(x), 256))


class GpuUtilization:
    """Mean GPU utilization (%) sampled every 0.2 s while in use, or None without a GPU or NVML."""

    def __init__(self, device):
        self.device, self.samples, self.running = device, [], False

    def _sample(self):
        if self.device.type != "cuda":
            return None
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # no pynvml: ask nvidia-smi
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"--id={self.device.index or 0}",
                ],
                capture_output=True,
                text=True,
            )
            return float(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None

    def _loop(self):
        while self.running:
            value = self._sample()
            if value is not None:
                self.samples.append(value)
            time.sleep(0.2)

    def __enter__(self):
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def mean(self):
        return float(np.mean(self.samples)) if self.samples else None


def timed(device, run):
    """(seconds, result, GPU utilization) of one call, the device synchronized around it."""
    with GpuUtilization(device) as gpu:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, result, gpu.mean


def profiled(device, run, path: Path | None) -> None:
    """Run once under cProfile and torch's profiler and write both tables to ``path`` (None: skip).
    The main thread's Python calls, by their own time, then torch's operators, by their own device
    time on a GPU (by host time on a CPU)."""
    if path is None:
        return
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    python = cProfile.Profile()
    with profile(activities=activities) as operators:
        python.enable()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        python.disable()
    calls = io.StringIO()
    pstats.Stats(python, stream=calls).sort_stats("tottime").print_stats(25)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# main thread, Python calls by own time\n{calls.getvalue()}\n"
        f"# torch operators by {sort}\n{operators.key_averages().table(sort_by=sort, row_limit=25)}\n"
    )


def write_fields(folder: Path, n: int, size, cells_per_field: float):
    """Simulated fields as corrected stacks; returns their ids and true nuclei labels."""
    params = simulate.ScreenParams(
        plates=1,
        batches=1,
        moas=1,
        sites=n,
        height=size[0],
        width=size[1],
        cells_per_field=cells_per_field,
        blank_fraction=0,
        debris_fraction=0,
    )
    ids, truth = [], []
    for i, (_, raw, labels) in zip(range(n), simulate.simulate_plate(params, "SIM01")):
        stack = np.stack([images.to_uint16(images.rescale(p, 100, 20000)) for p in raw.astype(np.float32)])
        images.write_tiff(images.corrected_path(folder, f"f{i:03d}"), stack)
        ids.append(f"f{i:03d}")
        truth.append(labels)
    return ids, truth


def train_model(path: Path, epochs: int, device) -> Path:
    """The small U-Net the workflow trains by default: 12 simulated 256x256 fields of the same nuclei."""
    params = simulate.ScreenParams(plates=1, batches=1, moas=1, sites=12, blank_fraction=0, debris_fraction=0, seed=1)
    fields = [(raw[0], labels) for _, (_, raw, labels) in zip(range(12), simulate.simulate_plate(params, "SIM01"))]
    return segmentation.train(*zip(*fields), path, epochs=epochs, seed=0, device=device)


def bare_cellpose(model, fields: int, shape, batch_size: int, device):
    """The U-Net alone on the tiles the rule gives it (Cellpose's own tiling of a padded field),
    preloaded on the device, ``batch_size`` tiles per pass."""
    from cellpose import transforms

    rescale = model.diam_mean / model.diam_labels
    height, width = int(shape[0] * rescale), int(shape[1] * rescale)
    pad = transforms.get_pad_yx(height, width)
    padded = np.zeros((2, height + pad[0] + pad[1], width + pad[2] + pad[3]), np.float32)
    tile = min(int(np.ceil(max(shape) * rescale / 16) * 16) + 16, segmentation.MAX_TILE.get(device.type, 512))
    tiles = transforms.make_tiles(padded, bsize=tile, tile_overlap=0.1)[0]
    per_field = tiles.shape[0] * tiles.shape[1]
    batch = torch.zeros((batch_size, 2, *tiles.shape[-2:]), device=device)
    model.net.eval()

    def run():
        with torch.inference_mode():
            for _ in range(int(np.ceil(fields * per_field / batch_size))):
                model.net(batch)

    return run


def preloaded_crops(fields: torch.Tensor, field_ids: list[str], centres: dict, size: int) -> torch.Tensor:
    """The cell crops of a batch of fields on the device, cut once, for the bare network (which, as the
    rule, embeds each batch's crops in passes of at most the device's cell batch size)."""
    found = [np.asarray(centres.get(f, np.zeros((0, 2))), np.float64) for f in field_ids]
    owners = torch.repeat_interleave(torch.arange(len(found)), torch.tensor([len(c) for c in found]))
    centres = torch.from_numpy(np.concatenate(found)).to(fields.device)
    return features.crop_cells(fields, owners.to(fields.device), centres, size)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1280), metavar=("H", "W"))
    parser.add_argument("--cells", type=float, default=7.5, help="simulate.cells_per_field (per 256x256 px)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="the rules' threads (cores)")
    parser.add_argument("--model", help="a Cellpose model file; default: train the workflow's small U-Net here")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--profile", type=Path, help="a folder for each stage's profile tables (an untimed rerun)")
    args = parser.parse_args()
    profile_table = (lambda stage: args.profile / f"{stage}.txt") if args.profile else (lambda stage: None)
    torch.set_num_threads(args.threads)
    jobs.reuse_freed_memory()  # as every rule job does
    device = jobs.pick_device()
    channels = list(simulate.CHANNELS)
    batch = features.default_batch_size(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids, truth = write_fields(tmp / "corrected", args.fields, args.size, args.cells)
        model_path = args.model or train_model(tmp / "model" / "cellpose.pth", args.epochs, device)
        model = segmentation.load_model(str(model_path), device)
        # bare Cellpose's diameter: the plate estimate untimed
        settings = {**SETTINGS, "model": model, "diameter": float(model.diam_labels)}

        segmentation.segment_plate(
            tmp / "corrected",
            ids[:2],
            tmp / "warm",
            measurement.measure_objects,
            channels=channels,
            **settings,
            workers=1,
        )

        def segment_rule(masks_folder):
            return lambda: segmentation.segment_plate(
                tmp / "corrected",
                ids,
                masks_folder,
                measurement.measure_objects,
                channels=channels,
                **settings,
                workers=args.threads,
            )

        seconds, (counts, per_cell), gpu = timed(device, segment_rule(tmp / "masks"))
        profiled(device, segment_rule(tmp / "masks_profiled"), profile_table("segmentation"))
        bare = bare_cellpose(model, args.fields, args.size, SETTINGS["batch_size"], device)
        bare()
        rows.append(("segmentation", seconds, timed(device, bare)[0], gpu))
        masks = [images.read_image(images.mask_path(tmp / "masks", i)) for i in ids]
        ap = measurement.average_precision(truth, masks)
        shown = np.stack([images.read_corrected(tmp / "corrected", i)[0] for i in ids[:4]])
        flows = segmentation.network_flows(
            model,
            shown,
            batch_size=SETTINGS["batch_size"],
            lowhigh=segmentation.intensity_bounds(
                tmp / "corrected", ids, SETTINGS["low_percentile"], SETTINGS["high_percentile"]
            )[0],
        )
        nuclear = np.stack([images.read_corrected(tmp / "corrected", i)[0] for i in ids])
        model.net, unet = NullUNet(model.net), model.net
        null_flows = timed(
            device,
            lambda: segmentation.network_flows(
                model, nuclear, settings["diameter"], SETTINGS["batch_size"], (0.0, 1.0)
            ),
        )[0]
        model.net = unet
        torch.set_num_threads(1)
        mask_seconds = timed(device, lambda: segmentation.masks_from_flows(flows))[0] / len(shown)
        torch.set_num_threads(args.threads)

        backbone = features.load_backbone(args.backbone)
        embedder = features.ImageEmbedder(backbone, device, precision="auto")
        centres = features.cell_centres(per_cell)
        cells = features.CellSettings(embedder, centres)
        stacks = [torch.from_numpy(images.read_corrected(tmp / "corrected", i)).to(device) for i in ids]
        preloaded = [torch.stack(stacks[k : k + batch]) for k in range(0, len(stacks), batch)]

        def rule(image_embedder=None, cell_settings=None, fields=ids):
            return lambda: features.extract_plate(
                tmp / "corrected",
                fields,
                channels=channels,
                field_embedder=image_embedder,
                cells=cell_settings,
                batch_size=batch,
                workers=args.threads,
            )

        rule(embedder, cells, ids[:batch])()  # warm-up
        seconds, _, gpu = timed(device, rule(embedder))
        profiled(device, rule(embedder), profile_table("whole_field"))
        rows.append(("whole field", seconds, timed(device, lambda: [embedder.embed(b) for b in preloaded])[0], gpu))
        seconds, _, gpu = timed(device, rule(cell_settings=cells))
        profiled(device, rule(cell_settings=cells), profile_table("single_cell"))
        crops = [
            preloaded_crops(b, ids[k * batch : (k + 1) * batch], centres, cells.crop_size)
            for k, b in enumerate(preloaded)
        ]
        step = features.default_cell_batch_size(device)
        rows.append(
            (
                "single cell",
                seconds,
                timed(device, lambda: [embedder.embed(c) for b in crops for c in torch.split(b, step)])[0],
                gpu,
            )
        )

        null = features.ImageEmbedder(features.Backbone("null", ChannelMeans(), (0.5,) * 3, (0.5,) * 3), device)
        null_seconds, _, _ = timed(device, rule(null))

    n = args.fields
    print(
        f"{n} fields of {args.size[0]}x{args.size[1]} x {len(channels)} channels, "
        f"{pd.Series(counts[metadata.NUCLEI_COUNT]).mean():.0f} nuclei per field (AP@0.5 {ap:.3f}), "
        f"{args.threads} threads, "
        f"{device}{' ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}, "
        f"feature batch {batch} fields, autocast {embedder.dtype}"
    )
    print(f"{'stage':14s} {'rule fields/s':>14s} {'bare network':>13s} {'rule/bare':>10s} {'GPU busy':>9s}")
    for stage, rule_seconds, bare_seconds, gpu in rows:
        busy = f"{gpu:.0f} %" if gpu is not None else "n/a"
        print(
            f"{stage:14s} {n / rule_seconds:14.2f} {n / bare_seconds:13.2f} {bare_seconds / rule_seconds:10.2f} "
            f"{busy:>9s}"
        )
    whole, single = rows[1][1], rows[2][1]
    print(
        f"masks (Cellpose's dynamics and clean-up, one process): {1 / mask_seconds:.1f} fields/s per core, "
        f"{args.threads / mask_seconds:.1f} with the {args.threads} workers, {16 / mask_seconds:.1f} with 16"
    )
    print(
        f"null network (data path): {n / null_seconds:.1f} fields/s, {n / null_seconds / args.threads:.1f} per core "
        "(goal >= 20 per core at 1024x1280)"
    )
    print(f"segmentation data path (null U-Net): {n / null_flows:.1f} fields/s")
    print(f"single-cell / whole-field time: {single / whole:.2f}x (goal on a GPU <= 1.5)")
    print("goals on a GPU: whole-field rule/bare >= 0.8; segmentation >= 20 fields/s at 1024x1280 on 16 cores")


if __name__ == "__main__":
    main()
