"""Fine-tuning the feature backbone on the screen's cells: the protocols, the sampler, the loss, the weights file."""

import numpy as np
import pandas as pd
import pytest
import torch

from morphoprof import features, images, simulate, training
from morphoprof import metadata as md

CROP = 32


def _screen():
    """A tiny simulated screen's field table: 2 MOAs of 2 compounds, 3 compounds without an MOA."""
    params = simulate.ScreenParams(
        plates=2, batches=1, sites=1, moas=2, replicates=2, concentrations=(1.0,), unannotated_compounds=3
    )
    return params, simulate.field_table(params, "unused")


def _cells_on_disk(tmp_path, params, fields):
    """Each field's corrected stack in its plate's folder and its nuclei centres, as the workflow keeps them."""
    rows = []
    for plate in simulate.plate_names(params):
        for row, raw, labels in simulate.simulate_plate(params, plate):
            stack = raw.astype(np.float32)
            stack = (stack - stack.min()) / (stack.max() - stack.min())
            images.write_tiff(images.corrected_path(tmp_path / plate, row["field"]), images.to_uint16(stack))
            for label in np.unique(labels[labels > 0]):
                y, x = np.nonzero(labels == label)
                rows.append(
                    {md.FIELD: row["field"], "Nuclei_Location_Center_Y": y.mean(), "Nuclei_Location_Center_X": x.mean()}
                )
    folders = {plate: str(tmp_path / plate) for plate in simulate.plate_names(params)}
    return pd.DataFrame(rows), folders


@pytest.fixture(scope="module")
def screen_cells(tmp_path_factory):
    params, fields = _screen()
    table, folders = _cells_on_disk(tmp_path_factory.mktemp("training"), params, fields)
    return fields, table, folders


def _crops(screen_cells, protocol, **options):
    fields, table, folders = screen_cells
    chosen = training.training_fields(fields, protocol=protocol, labels="compound", control="DMSO")
    settings = {"crop_size": CROP, "crops_per_field": 6, "validation_wells": 0.25, "seed": 0, **options}
    return training.training_cells(chosen, table, folders, **settings)


def test_held_out_protocol_never_yields_a_scored_compound(screen_cells):
    fields = screen_cells[0]
    scored = set(fields.loc[md.annotated(fields), md.COMPOUND]) - {"DMSO"}
    cells = _crops(screen_cells, "held_out")
    for plate_batches in (False, True):
        batches = training.minibatches(
            cells.labels, cells.plates, batch_size=16, steps=40, seed=0, plate_batches=plate_batches
        )
        seen = {compound for batch in batches for compound in cells.compounds[batch]}
        assert seen == {"DMSO", "UNK-1", "UNK-2", "UNK-3"} and not seen & scored
    transductive = _crops(screen_cells, "transductive")
    assert scored <= set(transductive.compounds)


def test_minibatches_balance_the_classes_and_keep_to_one_plate():
    labels = np.array([0] * 90 + [1] * 10 + [0] * 5 + [2] * 5)
    plates = np.array([0] * 100 + [1] * 10)
    drawn = np.concatenate(list(training.minibatches(labels, plates, batch_size=60, steps=50, seed=1)))
    shares = np.bincount(labels[drawn]) / len(drawn)
    assert np.allclose(shares, 1 / 3, atol=0.03)  # 82 % of crops are class 0, a third of the draws
    for batch in training.minibatches(labels, plates, batch_size=8, steps=20, seed=1, plate_batches=True):
        assert len(set(plates[batch])) == 1


def test_held_out_wells_are_whole_wells_of_every_class_with_two():
    _, fields = _screen()
    chosen = training.training_fields(fields, protocol="held_out", labels="compound", control="DMSO")
    held = training.held_out_wells(chosen, 0.25, seed=0)
    wells = chosen.assign(held=held).groupby([md.PLATE, md.WELL])["held"]
    assert (wells.nunique() == 1).all()  # a well is held out whole, or not at all
    per_class = chosen.assign(held=held).groupby("label")["held"].any()
    assert per_class.all()  # every class here has 2 wells or more
    assert not held.all()


def test_too_few_unannotated_compounds_stop_before_training():
    _, fields = _screen()
    with pytest.raises(md.InputError, match="config features.train.protocol: held_out leaves 3 compound"):
        training.training_fields(fields, protocol="held_out", labels="compound", control="DMSO", min_compounds=4)


def test_augmentation_keeps_the_shape_stays_non_negative_and_is_seeded():
    crops = torch.rand(8, 3, CROP, CROP)
    first = training.augment(crops, torch.Generator().manual_seed(3))
    again = training.augment(crops, torch.Generator().manual_seed(3))
    assert first.shape == crops.shape and first.min() >= 0
    assert torch.equal(first, again) and not torch.allclose(first, crops)


def _train(cells, **options):
    settings = {"epochs": 2, "learning_rate": 1e-3, "batch_size": 16, "seed": 0, **options}
    return training.train(cells, features.load_backbone("efficientnet_lite0"), **settings)


OVERFITTING = {"epochs": 3, "schedule": "constant", "learning_rate": 3e-3}
"""On the tiny screen these settings fit the training cells while the held-out loss turns up after epoch 2."""


@pytest.fixture(scope="module")
def trained(screen_cells):
    torch.set_num_threads(2)
    cells = _crops(screen_cells, "held_out")
    return cells, _train(cells, **OVERFITTING)


def test_training_lowers_the_loss_and_keeps_the_best_held_out_epoch(trained):
    cells, (state, history, chosen) = trained
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["train_loss"].iloc[0] < np.log(len(cells.classes)) * 1.2  # starts near chance
    assert chosen == int(history.loc[history["validation_loss"].idxmin(), "epoch"])
    assert chosen == 2 < len(history)  # the last epoch did worse on the held-out wells
    assert history["validation_accuracy"].between(0, 1).all()
    at_chosen, _, _ = _train(cells, **{**OVERFITTING, "epochs": chosen})  # constant rate: the same first epochs
    assert all(torch.equal(state[k], at_chosen[k]) for k in state)  # the chosen epoch's weights, not the last


def test_the_same_seed_gives_the_same_weights_on_a_cpu(trained):
    cells, (state, _, _) = trained
    again, _, _ = _train(cells, **OVERFITTING)
    assert state.keys() == again.keys()
    assert all(torch.equal(state[k], again[k]) for k in state)
    other, _, _ = _train(cells, **{**OVERFITTING, "epochs": 2}, seed=1)  # the chosen epoch, another seed
    assert not all(torch.equal(state[k], other[k]) for k in state)


def test_weights_are_a_plain_state_dict_that_the_backbone_loads(trained, tmp_path):
    _, (state, _, _) = trained
    path = tmp_path / "features.pt"
    torch.save(state, path)
    loaded = features.load_weights(path)
    backbone = features.load_backbone("efficientnet_lite0")
    backbone.net.load_state_dict(loaded)
    embedder = features.ImageEmbedder(backbone, torch.device("cpu"))
    imagenet = features.ImageEmbedder(features.load_backbone("efficientnet_lite0"), torch.device("cpu"))
    crops = torch.rand(4, 3, CROP, CROP)
    assert not torch.allclose(embedder.embed(crops), imagenet.embed(crops))  # the trained weights are in use


class _Payload:
    """Unpickled, it would create the file at ``target``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickled_payload_in_place_of_the_weights_does_not_run(tmp_path):
    path, ran = tmp_path / "features.pt", tmp_path / "payload-ran"
    torch.save({"net": _Payload(str(ran))}, path)
    with pytest.raises(md.InputError, match="not a weights file that loads as data only"):
        features.load_weights(path)
    assert not ran.exists()
