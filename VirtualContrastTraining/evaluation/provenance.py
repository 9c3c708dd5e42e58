"""Where an evaluation's numbers come from: model, preset, files with their hashes, data, versions.

A figure in a paper draft must be traceable to the exact model file, the
exact manifest and the software that produced it; evaluate writes this
record as provenance.json and the HTML report shows it.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from VirtualContrastTraining import __version__, software_versions
from VirtualContrastTraining.devices import resolve_device
from VirtualContrastTraining.synthesis import sidecar_preset_changes
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluation_provenance(*, model_name: str, sidecar: dict[str, Any], model_file: str | os.PathLike | None,
                          synthetic_list: str | os.PathLike | None, manifest: str | os.PathLike, split: str,
                          n_images: int, image_size: int, comparison_space: str,
                          linear_fit: tuple[float, float] | None, device: str, fold: int | None,
                          deidentified: bool = False, split_leakage: str = "") -> dict[str, Any]:
    """The provenance.json record of one evaluation (keys documented in docs/evaluation.md): with the fields the
    model changed from its preset, the device it was trained on and the device that synthesized ("auto"
    resolved to the device it picked), and `split_leakage`: the sentence saying how many patients straddle the
    manifest's splits, for image-level folds (001's, as published), "" otherwise."""
    source = Path(model_file) if model_file else Path(synthetic_list)
    return {
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_name": model_name,
        "preset": sidecar.get("config", {}).get("preset", "custom") if sidecar else "external",
        "preset_changes": sidecar_preset_changes(sidecar) if sidecar else {},
        "training_device": sidecar.get("device", "unknown") if sidecar else "unknown",
        "model_path": str(source.resolve()),
        "model_sha256": file_sha256(source),
        "data_fingerprint": sidecar.get("data_fingerprint", "unknown") if sidecar else "unknown",
        "manifest": str(Path(manifest).resolve()),
        "manifest_sha256": file_sha256(manifest),
        "split": split,
        "n_images": n_images,
        "image_size": image_size,
        "comparison_space": comparison_space,
        "linear_fit": list(linear_fit) if linear_fit else None,
        "device": str(resolve_device(device)) if device else "",
        "fold": fold,
        "split_leakage": split_leakage,
        "deidentified": deidentified,
        "versions": software_versions(),
        "not_for_diagnosis": NOT_FOR_DIAGNOSIS,
    }
