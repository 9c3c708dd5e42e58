"""Synthesize DES from LE with a trained generator, in the LE's own geometry.

The same preprocessing the model was trained with (recorded in its sidecar)
is applied forward to the LE and inverted on the prediction, so the synthetic
DES has exactly the LE's size, spacing, origin and direction, and the DES
intensity window of the training data.

Two pipelines, named by the sidecar's "pipeline" entry (absent in models
saved before it existed: those are "resize"):
- "resize" (001-004): the whole padded image at the model's input size, one forward pass;
- "patches" (000): the LE's breast box at spacing_mm in [-1, 1], run through
  a dense sliding window (MONAI sliding_window_inference) of patch_size
  windows every sw_stride pixels (000: 128 and 16, "~88 % overlap"), the
  overlaps averaged ("intensity averaging": mode "constant", every window
  weighs the same), then mapped back to the LE's grid (data/patches.py).

The one loop over many LE images (`Synthesizer.synthesize_each` over
`SynthesisInput`s, e.g. a manifest split from `manifest_inputs`) serves
`predict`, the demo and the evaluation of patch models alike. It reads each
input with `read_le`, which refuses what is not an LE: a DES, an HE or a
synthetic image, named by what its DICOM tags, metadata or file name say
(data/dicom_read.detect_role, as `import` classifies files), since a model
given a DES "synthesizes" from the answer.

Output names (docs/outputs.md): every synthetic file is `<case>_SYNTHETIC-DES.<ext>`; in a manifest <case> is
the case id, for one LE file `file_case_id` (its name without extension and without a trailing LE word), so
predict of a file and of a manifest holding it name the output alike. `output_stems` gives each case id of a
run its own file stem (predict's images, evaluate's heatmaps), and with de-identification (`case_pseudonyms`) the stems and every id written are pseudonyms
keyed by the bytes of the input (the manifest), so predict and evaluate of one manifest agree and a
dictionary of MRNs does not reverse them (docs/deidentification.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from VirtualContrastTraining import __version__
from VirtualContrastTraining.checkpoints import load_generator
from VirtualContrastTraining.config.presets import PRESETS
from VirtualContrastTraining.config.registries import model_name, preset_changes
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import BITMAP_SUFFIXES, SITK_SUFFIXES, read_image
from VirtualContrastTraining.data.importer import synthetic_marker
from VirtualContrastTraining.data.manifest import case_file_stem, read_manifest
from VirtualContrastTraining.data.patches import (
    BACKGROUND,
    PatchPipeline,
    postprocess_patches,
    preprocess_patches,
    sliding_overlap,
)
from VirtualContrastTraining.data.preprocessing import PreprocessConfig, postprocess, preprocess
from VirtualContrastTraining.data.splits import require_splits
from VirtualContrastTraining.devices import resolve_device
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.execution import amp_dtype
from VirtualContrastTraining.synthetic_wording import METADATA_WARNING, SYNTHETIC_WORD

PIPELINES = ("resize", "patches")
# The extensions an LE file may have, longest first (".nii.gz" before ".gz"-less ones), and the LE word that may
# end its name (P1_L_CC_LE.dcm, as the phantom names it): neither is part of the case.
_LE_SUFFIXES = sorted({*SITK_SUFFIXES, *BITMAP_SUFFIXES, ".dcm", ".dicom"}, key=len, reverse=True)
_LE_WORD = re.compile(r"[ _.-]LE$", re.IGNORECASE)
# What each refused role of an input is, in words.
_NOT_LE = {"DES": "a DES (recombined / subtracted image)", "HE": "a high-energy (HE) image"}
# Sliding-window patches per forward pass: on CPU larger batches gain nothing and only raise peak memory.
SW_BATCH_SIZE = 8
# On a GPU, windows per forward pass: as many as a quarter of the free memory holds at WINDOW_ACTIVATIONS float32
# feature maps of ngf channels per window (a ResNet block keeps its input, two convolutions and their norms), at
# most MAX_SW_BATCH_SIZE (a full-size breast box of 000 at 1 mm and stride 16 is a few dozen windows: one pass).
WINDOW_ACTIVATIONS = 8
MAX_SW_BATCH_SIZE = 256


@dataclass(frozen=True)
class SynthesisInput:
    """One LE image to synthesize from: its file, the stem of the output's file name, and what the file
    may not say itself (breast side, LE window; empty / None: from the image)."""

    le_path: str
    stem: str
    laterality: str = ""
    window: tuple[float, float] | None = None

    @classmethod
    def of_case(cls, case, stem: str = "") -> "SynthesisInput":
        """A manifest case (data/manifest.Case): its LE, `stem` (default: its id as a safe file stem), its
        side and LE window."""
        return cls(case.le_path, stem or case_file_stem(case.case_id), case.laterality, case.window("le"))


def file_case_id(path: str | os.PathLike) -> str:
    """The case a single LE file stands for: its name without the image extension and without a trailing LE
    word ("P1_L_CC_LE.dcm" -> "P1_L_CC", as the manifest's case id), so one output naming rule serves both."""
    name = Path(path).name
    suffix = next((s for s in _LE_SUFFIXES if name.lower().endswith(s)), "")
    stem = name[: len(name) - len(suffix)]
    return _LE_WORD.sub("", stem) or stem


def synthetic_problem(path: str | os.PathLike, image: Image) -> str:
    """Which marker says the image is synthetic ("" when none): the word SYNTHETIC in its file name, the
    Synthetic field of an NRRD/PNG/TIFF predict wrote, or one of the DICOM fields our writer marks."""
    if SYNTHETIC_WORD in re.findall(r"[A-Z0-9]+", Path(path).name.upper()):
        return "its file name"
    if str(image.meta.get("Synthetic", "")).lower() == "true":
        return "its Synthetic metadata field"
    if image.meta.get("role") == "SYNTHETIC":
        return "its DICOM ImageType or SeriesDescription"
    marker = synthetic_marker(path) if "role" in image.meta else ""  # "role": read from DICOM
    return f"its DICOM {marker}" if marker else ""


def read_le(path: str | os.PathLike) -> Image:
    """The LE image at `path`; InputError naming what it is instead when its DICOM tags say DES or HE (as
    `import` classifies them) or a marker says synthetic: a model given the DES copies the answer."""
    image = read_image(path)
    marker = synthetic_problem(path, image)
    if marker:
        raise InputError(path, f"is a synthetic image ({marker} says {SYNTHETIC_WORD}): "
                               "synthesize from the acquired low-energy (LE) image")
    role = image.meta.get("role", "")
    if role in _NOT_LE:
        raise InputError(path, f"is {_NOT_LE[role]} by its DICOM ImageType, processing code or description: "
                               "synthesize from the low-energy (LE) image of the same view")
    return image


def output_stems(case_ids: Iterable[str]) -> dict[str, str]:
    """Case id -> file stem, distinct for distinct ids: `case_file_stem`, plus "-" and 8 hex digits of the
    id's SHA-256 only where ids of one run share a stem ("a/b" and "a_b"), so no output replaces another
    and names without a clash stay as they were."""
    stems = {case_id: case_file_stem(case_id) for case_id in dict.fromkeys(case_ids)}
    shared = Counter(stems.values())
    return {case_id: stem if shared[stem] == 1 else f"{stem}-{hashlib.sha256(case_id.encode()).hexdigest()[:8]}"
            for case_id, stem in stems.items()}


def pseudonym_key(path: str | os.PathLike) -> bytes:
    """The de-identification key of a run: the SHA-256 of its input file's bytes (manifest or LE), so the
    same input gives the same pseudonyms in predict and evaluate, and nobody without it can recompute them."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").digest()
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None


def case_pseudonym(key: bytes, identifier: str, prefix: str = "case") -> str:
    """`prefix`-<10 hex digits of HMAC-SHA256(key, identifier)>: the pseudonym of a case or patient id."""
    return f"{prefix}-{hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()[:10]}"


def manifest_inputs(manifest_path: str | os.PathLike, split: str = "", *,
                    deidentify: bool = False) -> list[SynthesisInput]:
    """The cases of a manifest in its order, only those of `split` when given, each with its own output
    stem (`output_stems`; pseudonyms with `deidentify`); InputError when none is left, or when a split is
    asked of a manifest that has none (pointing to the `split` command)."""
    cases = read_manifest(manifest_path)
    if split:
        require_splits(cases, manifest_path)
    cases = [c for c in cases if not split or c.split == split]
    if not cases:
        raise InputError(manifest_path, f"no case in split {split!r}")
    key = pseudonym_key(manifest_path) if deidentify else b""
    names = [case_pseudonym(key, c.case_id) if deidentify else c.case_id for c in cases]
    stems = output_stems(names)
    return [SynthesisInput.of_case(c, stems[name]) for c, name in zip(cases, names)]


def file_input(path: str | os.PathLike, laterality: str = "", window: tuple[float, float] | None = None, *,
               deidentify: bool = False) -> SynthesisInput:
    """One LE file as an input, its output stem made as a manifest case's is: from `file_case_id` (its
    pseudonym with `deidentify`, keyed by the file's bytes)."""
    case = file_case_id(path)
    if deidentify:
        case = case_pseudonym(pseudonym_key(path), case)
    return SynthesisInput(os.fspath(path), output_stems([case])[case], laterality, window)


def sidecar_preset_changes(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The fields a model changed from its preset: as training recorded them ("preset_changes"), or, for a model
    saved before it did, against today's preset of that name ({} for a custom config or an unknown preset)."""
    recorded = sidecar.get("preset_changes")
    if isinstance(recorded, dict):
        return recorded
    config = sidecar.get("config") or {}
    preset = config.get("preset")
    return preset_changes(config, PRESETS[preset].to_dict()) if preset in PRESETS else {}


class Synthesizer:
    """A loaded generator G: LE -> DES with the preprocessing it was trained with."""

    def __init__(self, generator, sidecar: dict[str, Any], device, model_path: str = ""):
        self.generator = generator
        self.sidecar = sidecar
        self.device = device
        self.model_path = model_path
        self.pipeline = sidecar.get("pipeline", "resize")
        if self.pipeline not in PIPELINES:
            raise InputError(model_path or None, f"unknown pipeline {self.pipeline!r} in the model sidecar "
                             f"(known: {', '.join(PIPELINES)})")
        # One of the two is set, per pipeline.
        self.preprocess_config = self.patch_pipeline = None
        if self.pipeline == "resize":
            self.preprocess_config = PreprocessConfig.from_dict(sidecar["preprocessing"])
        else:
            self.patch_pipeline = PatchPipeline.from_dict(sidecar["preprocessing"], where=model_path or None)
        self.des_window = tuple(float(v) for v in sidecar["des_output_window"])

    @classmethod
    def load(cls, model_path: str | os.PathLike, device: str = "auto") -> "Synthesizer":
        dev = resolve_device(device)
        generator, sidecar = load_generator(model_path, device=str(dev))
        return cls(generator, sidecar, dev, os.fspath(model_path))

    @classmethod
    def untrained(cls, config, des_window: tuple[float, float], device: str = "cpu") -> "Synthesizer":
        """A freshly initialised generator of `config` with the preprocessing `config` implies.

        For benchmarks: the cost of synthesis does not depend on the weights.
        """
        from VirtualContrastTraining.models import build_generator  # lazy: torch

        dev = resolve_device(device)
        preprocessing = (PatchPipeline.from_config(config) if config.pipeline == "patches"
                         else PreprocessConfig(size=config.image_size))
        sidecar = {"config": config.to_dict(), "pipeline": config.pipeline, "preprocessing": preprocessing.to_dict(),
                   "des_output_window": list(des_window)}
        return cls(build_generator(config).to(dev).eval(), sidecar, dev)

    @property
    def model_name(self) -> str:
        """Human name, e.g. "Seg-CycleGAN (demo)", or "Seg-CycleGAN, from demo, modified: ngf 8" for a run that
        changed its preset (registries.model_name), for tables and DICOM descriptions."""
        return model_name(self.sidecar.get("config", {}), sidecar_preset_changes(self.sidecar))

    def provenance(self) -> dict[str, str]:
        """Key/value facts written into every synthetic output's metadata."""
        config = self.sidecar.get("config", {})
        return {
            "Synthetic": "true",
            "VirtualContrast.Warning": METADATA_WARNING,
            "VirtualContrast.Model": self.model_name,
            "VirtualContrast.Preset": str(config.get("preset", "custom")),
            "VirtualContrast.ModelPath": self.model_path,
            "VirtualContrast.DataFingerprint": str(self.sidecar.get("data_fingerprint", "")),
            "VirtualContrast.EngineVersion": __version__,
        }

    def forward_context(self):
        """Inference without autograd; on CUDA in the mixed precision of training (bf16 where supported, see
        execution.amp_dtype) unless the model's config turned amp off. The CPU runs float32 as before."""
        import torch  # lazy: torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.device.type == "cuda" and self.sidecar.get("config", {}).get("amp", True):
            stack.enter_context(torch.autocast("cuda", dtype=amp_dtype(self.device)))
        return stack

    def sw_batch_size(self) -> int:
        """Sliding windows per forward pass: SW_BATCH_SIZE on the CPU; on CUDA what a quarter of the free
        memory holds (WINDOW_ACTIVATIONS maps of ngf channels per window), between SW_BATCH_SIZE and
        MAX_SW_BATCH_SIZE."""
        if self.device.type != "cuda":
            return SW_BATCH_SIZE
        import torch  # lazy: torch

        free, _ = torch.cuda.mem_get_info(self.device)
        ngf = int(self.sidecar.get("config", {}).get("ngf", 64))
        window_bytes = WINDOW_ACTIVATIONS * ngf * self.patch_pipeline.patch_size ** 2 * 4
        return max(SW_BATCH_SIZE, min(MAX_SW_BATCH_SIZE, free // 4 // window_bytes))

    def predict01(self, le01: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """Preprocessed LE images in [0,1] -> predicted DES in [0,1]; (S,S) or (N,S,S)."""
        import torch  # lazy: torch

        single = le01.ndim == 2
        batch = le01[np.newaxis] if single else le01
        out = np.empty(batch.shape, dtype=np.float32)
        with self.forward_context():
            for start in range(0, len(batch), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(batch[start:start + batch_size], dtype=np.float32))
                y = self.generator(x[:, np.newaxis].to(self.device))
                out[start:start + batch_size] = y[:, 0].float().clamp(0, 1).cpu().numpy()
        return out[0] if single else out

    def predict_patches(self, box: np.ndarray) -> np.ndarray:
        """A preprocessed breast box in [-1, 1] -> predicted DES on the same grid, by the dense sliding window.

        Windows of patch_size start every sw_stride pixels, the last flush with
        the far edge; a box smaller than a window is padded with the background (-1).
        `sw_batch_size` windows per forward pass.
        """
        import torch  # lazy: torch
        from monai.inferers import sliding_window_inference  # lazy: monai

        size, stride = self.patch_pipeline.patch_size, self.patch_pipeline.sw_stride
        x = torch.from_numpy(np.ascontiguousarray(box, dtype=np.float32))[None, None].to(self.device)
        with self.forward_context():
            y = sliding_window_inference(x, (size, size), self.sw_batch_size(), self.generator,
                                         overlap=sliding_overlap(size, stride), mode="constant",
                                         padding_mode="constant", cval=BACKGROUND)
        return y[0, 0].float().clamp(-1, 1).cpu().numpy()

    def synthesize(self, le: Image, *, laterality: str = "", window: tuple[float, float] | None = None) -> Image:
        """A synthetic DES Image in the LE's geometry, marked synthetic in its metadata.

        `window` is the LE's (center, width) when the preprocessing derives it
        per image; a patch model trained with a fixed LE window (000) always
        uses that one. `laterality` places the padding of the resize pipeline.
        """
        if self.pipeline == "patches":
            box, params = preprocess_patches(le, self.patch_pipeline, which="le", window=window)
            out = postprocess_patches(self.predict_patches(box), params, le, self.des_window)
        else:
            le01, params = preprocess(le, laterality=laterality or le.meta.get("laterality", ""), window=window,
                                      config=self.preprocess_config)
            out = postprocess(self.predict01(le01), params, le, self.des_window, self.device)
        center = (self.des_window[0] + self.des_window[1]) / 2
        width = self.des_window[1] - self.des_window[0]
        out.meta = {**le.meta, **self.provenance(), "window_center": center, "window_width": width, "role": "SYNTHETIC"}
        return out

    def synthesize_each(self, inputs: Iterable[SynthesisInput]) -> Iterator[tuple[SynthesisInput, Image]]:
        """(input, synthetic DES) for each input in order, each LE read when its turn comes (one image in memory).

        The one "predict every case" loop: `predict`, the demo and the evaluation of patch models use it.
        """
        for item in inputs:
            yield item, self.synthesize(read_le(item.le_path), laterality=item.laterality, window=item.window)
