"""A simulated image-based screen with known mechanisms of action (MOAs).

Cells are drawn with BBBC021-like phenotypes: each MOA moves a vector of cell
parameters (nuclear size, shape and intensity, cell count, microtubule and actin
texture) away from DMSO, scaled by the compound's potency and the dose. ``difficulty``
(0: every compound of an MOA looks like the others, 1: the default) adds what makes real
screens hard: potencies spread over a wide range, so weak compounds at a low dose look
like DMSO; off-target effects of each compound; a toxicity shared by all MOAs; wells that
mix responding and resting cells; and batches that differ in their cells' biology and
their sensitivity to each phenotype, not only in intensity. Fields are then degraded the
way real screens are: a per plate and channel illumination gradient, per batch intensity
shifts, shot and read noise, blank and debris fields. Everything is a pure function of the
parameters and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import draw

from . import metadata as md

CHANNELS = ("DNA", "tubulin", "actin")
CONTROL = "DMSO"
CAMERA_OFFSET = 100.0  # the simulated camera's dark level: counts read without light, not shaded

# Log-fold (or additive, for fractions) changes per MOA, BBBC021's MOA names.
PHENOTYPES: dict[str, dict[str, float]] = {
    "Actin disruptors": {"actin_fibers": -1.6, "actin_puncta": 1.0, "cell_size": -0.25},
    "Microtubule destabilizers": {"tubulin_fibers": -1.6, "tubulin_diffuse": 0.6, "mitotic": 0.25, "cell_size": -0.35},
    "Microtubule stabilizers": {"tubulin_bundles": 1.0, "tubulin_fibers": 0.6, "mitotic": 0.2, "multinucleate": 0.2},
    "DNA damage": {"nucleus_size": 0.4, "density": -0.4, "dna_foci": 1.0},
    "Aurora kinase inhibitors": {"multinucleate": 0.45, "nucleus_size": 0.45, "cell_size": 0.45, "density": -0.6},
    "Protein synthesis": {"density": -0.7, "cell_size": -0.45, "dna_intensity": -0.3, "tubulin_diffuse": -0.4},
    "DNA replication": {"nucleus_size": 0.2, "dna_intensity": -0.35, "nucleus_elongation": 0.35, "density": -0.3},
    "Eg5 inhibitors": {"mitotic": 0.55, "density": -0.2, "tubulin_diffuse": 0.3},
    "Epithelial": {"cell_size": 0.4, "actin_cortex": 1.0, "actin_fibers": -0.5},
    "Protein degradation": {"actin_cortex": 0.7, "nucleus_elongation": 0.3, "tubulin_fibers": -0.4},
    "Kinase inhibitors": {"cell_size": 0.3, "tubulin_fibers": 0.45, "nucleus_elongation": 0.4},
    "Cholesterol-lowering": {"dna_intensity": 0.3, "actin_puncta": 0.6, "nucleus_elongation": -0.3},
}
MOA_CODES = dict(zip(PHENOTYPES, ("ACT", "MTD", "MTS", "DDR", "AUR", "PSY", "REP", "EG5", "EPI", "PDG", "KIN", "CHL")))
ADDITIVE = {"mitotic", "multinucleate", "actin_puncta", "dna_foci"}
# What difficulty 1 adds: the spread of log-potency, each compound's off-target effect (log-fold per
# parameter, a tenth of it on fractions), the toxicity every MOA shares, the share of cells resting at
# the weakest dose, and each batch's spread in baseline biology and in sensitivity (log-fold).
POTENCY_SPREAD, OFF_TARGET, RESTING, BATCH_BIOLOGY, BATCH_SENSITIVITY = 0.225, 0.15, 0.3, 0.04, 0.15
TOXICITY = {"density": -0.15, "cell_size": -0.075, "dna_intensity": 0.05}
BATCH_SHIFTED = ("density", "cell_size", "dna_intensity", "tubulin_diffuse", "actin_cortex")
BASELINE = {
    "density": 1.0,
    "nucleus_size": 1.0,
    "nucleus_elongation": 1.0,
    "dna_intensity": 1.0,
    "mitotic": 0.03,
    "multinucleate": 0.0,
    "cell_size": 1.0,
    "tubulin_fibers": 1.0,
    "tubulin_diffuse": 1.0,
    "tubulin_bundles": 1.0,
    "actin_fibers": 1.0,
    "actin_cortex": 1.0,
    "actin_puncta": 0.0,
    "dna_foci": 0.0,
}
NUCLEUS_SPACING = 2.6  # nucleus centres are placed at least this many nucleus radii apart
# Random sequential packing of discs NUCLEUS_SPACING radii wide jams at about 0.547 of the area; up to 0.4 every
# requested centre is placed (measured), so cells_per_field is capped there.
MAX_PACKING = 0.4


def max_cells_per_field(nucleus_radius: float) -> float:
    """The most nuclei per 256x256 px area that placement fits, for a nucleus radius in px."""
    return MAX_PACKING * 256**2 / (np.pi * (NUCLEUS_SPACING / 2 * nucleus_radius) ** 2)


@dataclass(frozen=True)
class ScreenParams:
    """Knobs of the simulated screen (config key ``simulate``)."""

    seed: int = 0
    plates: int = 4
    batches: int = 2
    sites: int = 2
    height: int = 256
    width: int = 256
    moas: int = 6
    compounds_per_moa: int = 2
    concentrations: tuple[float, ...] = (0.3, 1.0)
    replicates: int = 2
    control_wells: int = 6
    cells_per_field: float = 40.0
    nucleus_radius: float = 7.0
    illumination_strength: float = 0.5
    noise: float = 1.0
    phenotype_strength: float = 1.0
    difficulty: float = 1.0
    blank_fraction: float = 0.02
    debris_fraction: float = 0.02
    unannotated_compounds: int = 0

    def __post_init__(self):
        """Reject densities that cannot be placed: they used to leave fields short of nuclei after minutes of trying."""
        if self.difficulty < 0:
            raise ValueError(f"config simulate.difficulty: must be 0 or more, not {self.difficulty:g}")
        if self.nucleus_radius <= 0:
            raise ValueError(f"config simulate.nucleus_radius: must be positive, not {self.nucleus_radius:g}")
        limit = max_cells_per_field(self.nucleus_radius)
        if self.cells_per_field > limit:
            raise ValueError(
                f"config simulate.cells_per_field: {self.cells_per_field:g} is too dense. It counts nuclei per "
                f"256x256 px area (not per field), and at most about {limit:.0f} fit there at "
                f"simulate.nucleus_radius {self.nucleus_radius:g} (centres are {NUCLEUS_SPACING} radii apart)"
            )

    @classmethod
    def from_config(cls, cfg: dict) -> ScreenParams:
        """Build from the ``simulate`` config block; unknown keys are a config typo."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"config simulate: unknown key(s) {unknown}; known: {sorted(known)}")
        values = dict(cfg)
        if "concentrations" in values:
            values["concentrations"] = tuple(float(c) for c in values["concentrations"])
        params = cls(**values)
        if params.moas > len(PHENOTYPES):
            raise ValueError(f"config simulate.moas: at most {len(PHENOTYPES)} MOAs can be simulated")
        if params.batches > params.plates:
            raise ValueError("config simulate.batches: cannot exceed simulate.plates")
        return params


def plate_names(params: ScreenParams) -> list[str]:
    return [f"SIM{p + 1:02d}" for p in range(params.plates)]


def plate_batch(params: ScreenParams, plate_index: int) -> str:
    return f"Batch{plate_index * params.batches // params.plates + 1}"


def _well_names():
    for row in "ABCDEFGHIJKLMNOP":
        for col in range(1, 25):
            yield f"{row}{col:02d}"


def moa_table(params: ScreenParams) -> pd.DataFrame:
    """One row per compound: name, MOA, batch it is screened in, potency, and whether the screen's
    MOA table annotates it. The ``unannotated_compounds`` (``UNK-1``...) come from the same
    phenotype model, their MOAs taken in turn, and are left out of the MOA table the workflow
    reads: the compounds a feature network is trained on under the held-out protocol."""
    rng = np.random.default_rng([params.seed, 1])
    spread = np.random.default_rng([params.seed, 7])
    moas = list(PHENOTYPES)[: params.moas]
    rows = []
    for m, moa in enumerate(moas):
        for j in range(params.compounds_per_moa):
            potency = rng.uniform(0.75, 1.25) * np.exp(params.difficulty * POTENCY_SPREAD * spread.normal())
            rows.append(
                {
                    "compound": f"{MOA_CODES[moa]}-{j + 1}",
                    "moa": moa,
                    "batch": f"Batch{(m + j) % params.batches + 1}",
                    "potency": float(potency),
                    "annotated": True,
                }
            )
    hidden = np.random.default_rng([params.seed, 11])
    for j in range(params.unannotated_compounds):
        potency = hidden.uniform(0.75, 1.25) * np.exp(params.difficulty * POTENCY_SPREAD * hidden.normal())
        rows.append(
            {
                "compound": f"UNK-{j + 1}",
                "moa": moas[j % len(moas)],
                "batch": f"Batch{j % params.batches + 1}",
                "potency": float(potency),
                "annotated": False,
            }
        )
    return pd.DataFrame(rows)


def annotated_moas(params: ScreenParams) -> pd.DataFrame:
    """The screen's MOA table as a user's would be (compound, moa, ...): its annotated compounds only."""
    table = moa_table(params)
    return table[table["annotated"]].drop(columns="annotated").reset_index(drop=True)


def screen_layout(params: ScreenParams) -> pd.DataFrame:
    """Field table of the screen: plate, well, site, batch, compound, concentration, field id.

    Unannotated compounds follow the annotated ones on each plate, so adding some leaves every
    other field as it was. Each compound is screened in one batch (as in BBBC021, where a compound sits in one
    week), its replicate wells spread over that batch's plates; every plate has DMSO wells.
    """
    plates = plate_names(params)
    batches = [plate_batch(params, p) for p in range(params.plates)]
    wells_by_plate: dict[str, list[tuple[str, float]]] = {
        plate: [(CONTROL, 0.0)] * params.control_wells for plate in plates
    }
    for _, compound in moa_table(params).iterrows():
        batch_plates = [pl for pl, b in zip(plates, batches) if b == compound["batch"]]
        # unannotated compounds are screened at the highest concentration only: enough to train on
        doses = list(enumerate(params.concentrations))
        for c, conc in doses if compound["annotated"] else doses[-1:]:
            for r in range(params.replicates):
                plate = batch_plates[(r + c) % len(batch_plates)]
                wells_by_plate[plate].append((compound["compound"], conc))
    rows = []
    for plate, batch in zip(plates, batches):
        for well, (compound, conc) in zip(_well_names(), wells_by_plate[plate]):
            for site in range(1, params.sites + 1):
                rows.append(
                    {
                        "plate": plate,
                        "well": well,
                        "site": site,
                        "batch": batch,
                        "compound": compound,
                        "concentration": conc,
                    }
                )
    layout = pd.DataFrame(rows)
    layout["field"] = md.field_ids(layout["plate"], layout["well"], layout["site"])
    return layout


def _changed(pheno: dict[str, float], changes: dict[str, float]) -> dict[str, float]:
    """Cell parameters moved by log-fold changes (added, for the fractions in ADDITIVE)."""
    moved = dict(pheno)
    for key, change in changes.items():
        moved[key] = moved[key] + change if key in ADDITIVE else moved[key] * float(np.exp(change))
    return moved


def resting_phenotype(params: ScreenParams, batch: str) -> dict[str, float]:
    """The cell parameters of a batch's untreated cells: DMSO's, shifted by the batch's biology."""
    rng = np.random.default_rng([params.seed, 9, int(batch.removeprefix("Batch"))])
    shifts = rng.normal(0, params.difficulty * BATCH_BIOLOGY, len(BATCH_SHIFTED))
    return _changed(BASELINE, dict(zip(BATCH_SHIFTED, shifts)))


def treatment_phenotype(params: ScreenParams, compound: str, concentration: float, batch: str = "Batch1") -> dict:
    """Cell parameters of a treatment's responding cells in a batch: the MOA's direction, scaled by
    potency and dose, with the compound's off-target effect, the shared toxicity and the batch's
    sensitivity; ``responding`` is the fraction of cells that respond (the rest rest)."""
    pheno = {**resting_phenotype(params, batch), "responding": 1.0}
    if compound == CONTROL:
        return pheno
    table = moa_table(params).set_index("compound")
    moa, potency = table.loc[compound, "moa"], table.loc[compound, "potency"]
    dose = (params.concentrations.index(concentration) + 1) / len(params.concentrations)
    quirk = np.random.default_rng([params.seed, 2, sum(map(ord, compound))])
    strength = params.phenotype_strength * potency * dose
    changes = {key: strength * change * quirk.uniform(0.8, 1.2) for key, change in PHENOTYPES[moa].items()}
    d = params.difficulty
    off_target = np.random.default_rng([params.seed, 8, sum(map(ord, compound))]).normal(0, 1, len(BASELINE))
    sensitivity = np.random.default_rng([params.seed, 10, int(batch.removeprefix("Batch"))]).normal(0, 1, len(BASELINE))
    for k, key in enumerate(BASELINE):
        scale = 0.1 if key in ADDITIVE else 1.0
        changes[key] = changes.get(key, 0.0) + d * strength * (
            OFF_TARGET * scale * off_target[k] + TOXICITY.get(key, 0.0)
        )
        changes[key] *= float(np.exp(d * BATCH_SENSITIVITY * sensitivity[k]))
    pheno = _changed(pheno, changes)
    pheno["responding"] = 1.0 - d * RESTING * (1.0 - min(1.0, potency * dose))
    return pheno


def phenotype_profiles(params: ScreenParams) -> pd.DataFrame:
    """The screen's ground truth as treatment profiles: each treatment's cell parameters as changes
    from its batch's resting cells (log-fold; differences for fractions), weighted by the share of
    cells responding, in ``Truth_<parameter>`` columns. Scored like any profiles, they give the
    ceiling the images allow: what a perfect measurement of the cells would score."""
    table = annotated_moas(params)
    rows = []
    for _, compound in table.iterrows():
        resting = resting_phenotype(params, compound["batch"])
        for concentration in params.concentrations:
            pheno = treatment_phenotype(params, compound["compound"], concentration, compound["batch"])
            changes = {
                f"Truth_{k}": pheno["responding"]
                * (pheno[k] - resting[k] if k in ADDITIVE else float(np.log(pheno[k] / resting[k])))
                for k in BASELINE
            }
            rows.append(
                {
                    md.COMPOUND: compound["compound"],
                    md.CONCENTRATION: float(concentration),
                    md.MOA: compound["moa"],
                    md.BATCH: compound["batch"],
                    **changes,
                }
            )
    return pd.DataFrame(rows)


def illumination_field(params: ScreenParams, plate_index: int, channel_index: int) -> np.ndarray:
    """Smooth multiplicative shading (vignetting plus a gradient) of one plate and channel."""
    rng = np.random.default_rng([params.seed, 3, plate_index, channel_index])
    y, x = np.mgrid[0 : params.height, 0 : params.width].astype(np.float32)
    y, x = y / params.height - 0.5, x / params.width - 0.5
    cy, cx = rng.uniform(-0.3, 0.3, size=2)
    gy, gx = rng.normal(size=2)
    radial = (y - cy) ** 2 + (x - cx) ** 2
    shading = 1.0 - params.illumination_strength * (radial / radial.max() + 0.3 * (gy * y + gx * x))
    shading = np.clip(shading, 0.05, None)
    return (shading / shading.max()).astype(np.float32)


def _place_centres(rng, n: int, height: int, width: int, min_dist: float) -> np.ndarray:
    """Random sequential placement of up to n nucleus centres, at least min_dist apart.

    Candidates are uniform (y, x) draws; each is kept if it is at least min_dist (np.hypot) from every centre
    kept before it, until n are kept or n * 30 were drawn. Candidates are drawn in blocks and checked with k-d
    trees, and the generator is rewound to just after the last candidate used, so the centres and the
    generator's state are exactly those of drawing and checking one candidate at a time, in O(n log n).
    """
    kept = np.empty((0, 2))
    budget, drawn = n * 30, 0
    while len(kept) < n and drawn < budget:
        wanted = n - len(kept)
        expected_draws = wanted * (drawn + 1) / (len(kept) + 1)  # at the acceptance rate so far
        block_size = min(budget - drawn, int(1.2 * expected_draws) + 16)
        state = rng.bit_generator.state
        candidates = rng.uniform([0, 0], [height, width], size=(block_size, 2))
        accepted, used = _accept_in_order(candidates, kept, wanted, min_dist)
        if used < block_size:
            rng.bit_generator.state = state
            rng.uniform([0, 0], [height, width], size=(used, 2))
        kept = np.concatenate([kept, candidates[:used][accepted[:used]]])
        drawn += used
    return kept


def _close_pairs(first: np.ndarray, second: np.ndarray, pairs: np.ndarray, min_dist: float) -> np.ndarray:
    """The (i, j) index pairs whose points are closer than min_dist, by the loop's own test np.hypot(*(b - a))."""
    gap = second[pairs[:, 1]] - first[pairs[:, 0]]
    return pairs[~(np.hypot(gap[:, 0], gap[:, 1]) >= min_dist)]


def _accept_in_order(candidates: np.ndarray, kept: np.ndarray, wanted: int, min_dist: float) -> tuple[np.ndarray, int]:
    """Which candidates sequential placement keeps after `kept`, and how many it draws to keep `wanted` more.

    k-d tree distances may differ from np.hypot in the last bits, so the trees search a slightly wider
    radius and np.hypot decides.
    """
    search = min_dist * (1 + 1e-9)
    accepted = np.ones(len(candidates), bool)
    if len(kept):
        near_kept = cKDTree(kept).sparse_distance_matrix(cKDTree(candidates), search, output_type="ndarray")
        pairs = np.stack([near_kept["i"], near_kept["j"]], axis=1)
        accepted[_close_pairs(kept, candidates, pairs, min_dist)[:, 1]] = False
    free = np.flatnonzero(accepted)
    pairs = free[cKDTree(candidates[free]).query_pairs(search, output_type="ndarray")]
    conflicts = _close_pairs(candidates, candidates, pairs, min_dist)
    conflicts = conflicts[np.argsort(conflicts[:, 1])]
    # a candidate is lost to an earlier one only if that one was kept; earlier ones are settled first
    for earlier, later in conflicts.tolist():
        if accepted[earlier]:
            accepted[later] = False
    total = np.cumsum(accepted)
    used = int(np.searchsorted(total, wanted)) + 1 if total[-1] >= wanted else len(candidates)
    return accepted, used


def _paste(image: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Add a local patch into an image, clipped at the borders."""
    h, w = patch.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, image.shape[0]), min(left + w, image.shape[1])
    if y1 > y0 and x1 > x0:
        image[y0:y1, x0:x1] += patch[y0 - top : y1 - top, x0 - left : x1 - left]


def _pixel(coordinate: float, size: int) -> int:
    """Nearest pixel index (ties to even, as np.round), clipped to a patch of `size` pixels.

    float() first: Python's round of a float is the same as NumPy's, and far faster than rounding an np.float64.
    """
    return min(max(round(float(coordinate)), 0), size - 1)


def _draw_cell(
    rng, pheno: dict, centre, radius: float, channels: np.ndarray, labels: np.ndarray, next_label: int
) -> int:
    """Draw one cell (nucleus, microtubules, actin) into the channel stack and label image."""
    mitotic = rng.random() < pheno["mitotic"]
    elong = pheno["nucleus_elongation"] * rng.lognormal(0, 0.1)
    r_nuc = radius * np.sqrt(pheno["nucleus_size"]) * rng.lognormal(0, 0.1)
    body = r_nuc * 2.3 * np.sqrt(pheno["cell_size"]) * rng.lognormal(0, 0.08)
    if mitotic:
        r_nuc, elong, body = r_nuc * 0.65, 1.0, body * 0.7
    half = int(np.ceil(body * 1.3)) + 2
    size = 2 * half + 1
    top, left = int(centre[0]) - half, int(centre[1]) - half
    rot = rng.uniform(0, np.pi)

    body_mask = np.zeros((size, size), np.float32)
    rr, cc = draw.ellipse(half, half, body * 1.15, body * 0.9, (size, size), rotation=rot)
    body_mask[rr, cc] = 1.0

    dna = np.zeros((size, size), np.float32)
    nuclei = [(0.0, 0.0)]
    if rng.random() < pheno["multinucleate"]:
        offset = r_nuc * 1.1
        nuclei = [(offset * np.sin(rot), offset * np.cos(rot)), (-offset * np.sin(rot), -offset * np.cos(rot))]
    nucleus_px = []
    for dy, dx in nuclei:
        a, b = r_nuc * np.sqrt(elong), r_nuc / np.sqrt(elong)
        rr, cc = draw.ellipse(half + dy, half + dx, a, b, (size, size), rotation=rot + rng.normal(0, 0.3))
        level = pheno["dna_intensity"] * (2.2 if mitotic else 1.0) * rng.lognormal(0, 0.1)
        dna[rr, cc] = level * (0.85 + 0.3 * rng.random(len(rr)))
        for spot in rng.integers(0, len(rr), rng.poisson(max(pheno["dna_foci"], 0) * 6)):
            fr, fc = draw.disk((rr[spot], cc[spot]), 1.2, shape=(size, size))
            dna[fr, fc] += level * 0.9
        nucleus_px.append((rr, cc))

    tubulin = body_mask * 0.25 * pheno["tubulin_diffuse"]
    fibers = np.zeros((size, size), np.float32)
    n_fibers = 14 if not mitotic else 24
    for angle in rng.uniform(0, 2 * np.pi, n_fibers):
        length = body * rng.uniform(0.8, 1.3)
        end_row, end_col = half + length * np.sin(angle), half + length * np.cos(angle)
        rr, cc, val = draw.line_aa(half, half, _pixel(end_row, size), _pixel(end_col, size))
        fibers[rr, cc] += val
    if pheno["tubulin_bundles"] > 1.2:
        fibers = ndi.grey_dilation(fibers, size=(2, 2))
    tubulin += 0.55 * pheno["tubulin_fibers"] * pheno["tubulin_bundles"] * fibers * body_mask

    actin = np.zeros((size, size), np.float32)
    rr, cc = draw.ellipse_perimeter(half, half, int(body * 1.15), int(body * 0.9), -rot, (size, size))
    actin[rr, cc] = 0.8 * pheno["actin_cortex"]
    stress = np.zeros((size, size), np.float32)
    fiber_angle = rot + rng.normal(0, 0.2)
    sin, cos = np.sin(fiber_angle), np.cos(fiber_angle)
    reach_row, reach_col = sin * body * 1.3, cos * body * 1.3
    for offset in np.linspace(-body * 0.7, body * 0.7, 6):
        mid_row, mid_col = half + -cos * offset, half + sin * offset
        rr, cc, val = draw.line_aa(
            _pixel(mid_row - reach_row, size),
            _pixel(mid_col - reach_col, size),
            _pixel(mid_row + reach_row, size),
            _pixel(mid_col + reach_col, size),
        )
        stress[rr, cc] += val
    actin += 0.45 * pheno["actin_fibers"] * stress * body_mask
    n_puncta = rng.poisson(max(pheno["actin_puncta"], 0) * 14)
    for _ in range(n_puncta):
        py, px = rng.uniform(half - body * 0.8, half + body * 0.8, 2)
        if body_mask[int(py), int(px)]:
            rr, cc = draw.disk((py, px), 1.5, shape=(size, size))
            actin[rr, cc] += 1.0

    for c, patch in enumerate((dna, tubulin, actin)):
        _paste(channels[c], patch, top, left)
    for rr, cc in nucleus_px:
        y, x = rr + top, cc + left
        inside = (y >= 0) & (y < labels.shape[0]) & (x >= 0) & (x < labels.shape[1])
        labels[y[inside], x[inside]] = next_label
        next_label += 1
    return next_label


def render_field(
    params: ScreenParams,
    plate_index: int,
    field_index: int,
    pheno: dict,
    batch_gain: np.ndarray,
    shading: np.ndarray,
    resting: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One field: a (3, H, W) uint16 stack of raw camera counts and its nuclei labels. A share
    ``1 - pheno["responding"]`` of its cells is drawn with the ``resting`` parameters instead (by
    default DMSO's)."""
    rng = np.random.default_rng([params.seed, 4, plate_index, field_index])
    h, w = params.height, params.width
    channels = np.zeros((3, h, w), np.float32)
    labels = np.zeros((h, w), np.int32)
    kind = rng.random()
    blank = kind < params.blank_fraction
    debris = params.blank_fraction <= kind < params.blank_fraction + params.debris_fraction
    resting = BASELINE if resting is None else resting
    if not blank:
        responding = pheno.get("responding", 1.0)
        density = (
            pheno["density"]
            if responding == 1.0
            else responding * pheno["density"] + (1 - responding) * resting["density"]
        )
        expected = params.cells_per_field * density * h * w / 256**2
        centres = _place_centres(rng, rng.poisson(expected), h, w, params.nucleus_radius * NUCLEUS_SPACING)
        next_label = 1
        for centre in centres:
            cell = resting if responding < 1.0 and rng.random() >= responding else pheno
            next_label = _draw_cell(rng, cell, centre, params.nucleus_radius, channels, labels, next_label)
    if debris:
        for _ in range(rng.integers(2, 5)):
            rr, cc = draw.disk(rng.uniform([0, 0], [h, w]), rng.uniform(0.05, 0.12) * min(h, w), shape=(h, w))
            channels[:, rr, cc] += 6.0
    counts = ndi.gaussian_filter(channels, sigma=(0, 1.0, 1.0), output=channels)
    counts += 0.06
    counts *= shading
    counts *= batch_gain[:, None, None]
    counts *= 6000.0
    # shot and read noise; counts are positive. In place, in the same order as
    # counts + normal * noise * (sqrt(counts) + 15) + CAMERA_OFFSET, so values do not change.
    noisy = rng.standard_normal(counts.shape)
    noisy *= params.noise
    spread = np.sqrt(counts)
    spread += 15.0
    noisy *= spread
    noisy += counts
    noisy += CAMERA_OFFSET
    raw = np.clip(noisy, 0, 65535, out=noisy).astype(np.uint16)
    return raw, labels.astype(np.uint16)


def batch_gains(params: ScreenParams, batch: str, plate_index: int) -> np.ndarray:
    """Per-channel intensity gain of a batch, with a small plate-to-plate wobble."""
    b = int(batch.removeprefix("Batch"))
    batch_rng = np.random.default_rng([params.seed, 5, b])
    plate_rng = np.random.default_rng([params.seed, 6, plate_index])
    return np.exp(batch_rng.normal(0, 0.2, 3) + plate_rng.normal(0, 0.05, 3)).astype(np.float32)


def simulate_plate(params: ScreenParams, plate: str):
    """Yield (field row, raw (3, H, W) uint16 stack, nuclei labels) for every field of a plate."""
    layout = screen_layout(params)
    plate_index = plate_names(params).index(plate)
    fields = layout[layout["plate"] == plate].reset_index(drop=True)
    batch = fields["batch"].iloc[0]
    gains = batch_gains(params, batch, plate_index)
    shading = np.stack([illumination_field(params, plate_index, c) for c in range(len(CHANNELS))])
    resting = resting_phenotype(params, batch)
    phenotypes = {}
    for field_index, row in fields.iterrows():
        key = (row["compound"], row["concentration"])
        if key not in phenotypes:
            phenotypes[key] = treatment_phenotype(params, *key, batch)
        raw, labels = render_field(params, plate_index, field_index, phenotypes[key], gains, shading, resting)
        yield row, raw, labels


def image_path(image_dir, plate: str, field_id: str, channel: str) -> str:
    return f"{image_dir}/{plate}/{field_id}_{channel}.tif"


def image_table(params: ScreenParams, image_dir: str = "images") -> pd.DataFrame:
    """The screen as a user's generic image table (:func:`screen_layout` and a ``path_<channel>``
    column per channel, relative to the table's folder): what ``input.format: table`` reads."""
    layout = screen_layout(params)
    for channel in CHANNELS:
        layout[f"path_{channel}"] = [
            image_path(image_dir, p, f, channel) for p, f in zip(layout["plate"], layout["field"])
        ]
    return layout


def field_table(params: ScreenParams, image_dir: str) -> pd.DataFrame:
    """The screen as a field table (``Metadata_`` columns, ``Path_<channel>``, MOA attached)."""
    layout = screen_layout(params)
    fields = pd.DataFrame(
        {
            md.PLATE: layout["plate"],
            md.WELL: layout["well"],
            md.SITE: layout["site"],
            md.BATCH: layout["batch"],
            md.COMPOUND: layout["compound"],
            md.CONCENTRATION: layout["concentration"].astype(float),
        }
    )
    fields[md.FIELD] = layout["field"]
    for ch in CHANNELS:
        fields[md.path_column(ch)] = [
            image_path(image_dir, p, f, ch) for p, f in zip(fields[md.PLATE], fields[md.FIELD])
        ]
    moa = annotated_moas(params)[["compound", "moa"]]
    return md.attach_moa(fields, moa, control=CONTROL, source="simulated screen")
