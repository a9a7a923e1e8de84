"""A classical nuclei segmentation, to measure the Cellpose models against in tests."""

import numpy as np

from morphoprof import segmentation


def watershed_baseline(image: np.ndarray, diameter: float = 16.0, smoothing: float = 1.0) -> np.ndarray:
    """Classical nuclei segmentation: Otsu threshold, then a watershed on the distance transform
    seeded by its local maxima (at least a quarter of a nuclear ``diameter`` apart), so that
    touching nuclei are split."""
    from scipy import ndimage as ndi
    from skimage import feature, filters, morphology
    from skimage import segmentation as sk_segmentation

    smooth = filters.gaussian(image.astype(np.float32), smoothing)
    if smooth.max() == smooth.min():
        return np.zeros(image.shape, np.uint16)
    foreground = morphology.remove_small_objects(smooth > filters.threshold_otsu(smooth), max_size=15)
    distance = ndi.distance_transform_edt(foreground)
    peaks = feature.peak_local_max(
        distance, min_distance=max(1, round(diameter / 4)), labels=ndi.label(foreground)[0], exclude_border=False
    )
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = sk_segmentation.watershed(-distance, markers, mask=foreground)
    return segmentation.compact_labels(labels)
