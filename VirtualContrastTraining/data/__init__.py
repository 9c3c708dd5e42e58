"""Data: phantom, DICOM/NRRD/PNG readers and writers, import and pairing, manifests, preprocessing."""
