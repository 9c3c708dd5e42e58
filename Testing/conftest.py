"""Shared pytest setup. Feature-specific fixtures live in their own test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cdd-cesm-sample"

# Torch on 2 CI cores: avoid oversubscription between pytest and torch threads.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def cdd_sample() -> Path:
    """Real CDD-CESM sample pairs from ../shared (skipped where that folder is absent: a clone without the
    project's shared data; CI has it beside the clone). The one place this skip is decided."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CDD-CESM sample folder {SHARED_DATA} is absent on this machine")
    return SHARED_DATA


def make_tiny_model(run_dir: Path, *, image_size: int = 32, des_window=(1700.0, 2400.0)) -> Path:
    """A run folder holding an untrained, tiny generator saved through the real checkpoint code.

    Its weights are random: good for geometry, IO and report tests, not for quality.
    """
    from VirtualContrastTraining import checkpoints
    from VirtualContrastTraining.data.preprocessing import PreprocessConfig
    from VirtualContrastTraining.models.networks import define_G
    from VirtualContrastTraining.config.schema import TrainConfig

    config = TrainConfig(preset="demo", gamma_lesion=35.0, ngf=4, n_blocks=1, image_size=image_size)
    checkpoints.save_model(run_dir, define_G(1, 1, config.ngf, config.n_blocks), {
        "config": config.to_dict(), "preprocessing": PreprocessConfig(size=image_size).to_dict(),
        "des_output_window": list(des_window), "data_fingerprint": "f1ngerprint"})
    return run_dir


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    return make_tiny_model(tmp_path / "run")


@pytest.fixture(scope="session")
def small_phantom(tmp_path_factory) -> Path:
    """Manifest of a 6-image phantom at 2 mm (fast), shared read-only by the tests of a session."""
    from VirtualContrastTraining.data.phantom import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("phantom") / "ph", 6, seed=7, pixel_mm=2.0)


@pytest.fixture(scope="session")
def split_phantom(small_phantom, tmp_path_factory) -> Path:
    """small_phantom with fixed splits by patient: 1-2 train (4 images), 3 val, 4 test; read-only."""
    from dataclasses import replace

    from VirtualContrastTraining.data.manifest import read_manifest, write_manifest

    splits = {"PHANTOM-0001": "train", "PHANTOM-0002": "train", "PHANTOM-0003": "val", "PHANTOM-0004": "test"}
    cases = [replace(c, split=splits[c.patient_id]) for c in read_manifest(small_phantom)]
    return write_manifest(tmp_path_factory.mktemp("split") / "manifest.csv", cases)


@pytest.fixture
def mrml_scene():
    """A fresh MRML scene from slicer-core, set up like Slicer's (module logics, colours, layout)."""
    from VirtualContrastLib.headless import newScene

    return newScene()


@pytest.fixture
def vc_logic(mrml_scene):
    from VirtualContrastLib.logic import VirtualContrastLogicBase

    return VirtualContrastLogicBase(mrml_scene)


@pytest.fixture(scope="session")
def phantom_1mm(tmp_path_factory) -> Path:
    """Manifest of a 2-image phantom (one patient, CC and MLO) at 1 mm: real DICOM, segmentation, truth masks."""
    from VirtualContrastTraining.data.phantom import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("phantom1mm") / "ph", 2, seed=3, pixel_mm=1.0)
