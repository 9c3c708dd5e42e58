"""Every name a TrainConfig may give its recipe and its networks, as data: one entry each.

An entry says what the name is called in tables (title), which papers use it,
and where its builder lives ("module:attribute"). The builder is named, not
imported: config sits below models and recipes (they are built from a
TrainConfig), so models.build_generator / build_discriminator and
recipes.build_recipe resolve the entry with `load`. Adding a network is one
entry here plus its builder in models/builders.py; the schema's checks, the
Slicer panel's choices and the model names read these tables.

A model's name says what it is: its family, its preset, and the fields it
changed from that preset (`preset_changes`, `model_name`). The preset itself
is looked up by the caller (config.presets imports the schema, which imports
this module), which passes both configs as dicts.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Entry:
    title: str      # in model names, tables and DICOM descriptions
    builder: str    # "module:attribute" that builds it
    papers: str     # which of the papers (000-004) use it


def load(entry: Entry) -> Callable[..., Any]:
    """The builder an entry names (imports its module: torch for every network and recipe)."""
    module, _, attribute = entry.builder.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Paper:
    """One of the five papers as its own text gives it (../shared/papers): "not given in the paper" where it does
    not say. The table of docs/models.md and README is this data (Testing/test_names.py compares them)."""

    authors: str
    year: str
    title: str
    venue: str
    doi: str

    @property
    def short(self) -> str:
        """ "Rofena et al. 2024": the first author's surname, and the year when the paper gives one."""
        surname = self.authors.split(",")[0].split()[-1]
        return f"{surname} et al. {self.year}" if self.year.isdigit() else f"{surname} et al."


NOT_GIVEN = "not given in the paper"
# The five papers by the code their text files carry in ../shared/papers (000_....txt).
CITATIONS = {
    "000": Paper("Konstantinos Zormpas-Petridis, Reza Kalantar, Ludovica Iaccarino, Matteo Mancino, Gianluca "
                 "Franceschini, Paola Clauser, Valentina Longo, Evis Sala, Paolo Belli, Anna D'Angelo", "2026",
                 "Generating synthetic CEM from low-energy images using deep learning: A future without contrast "
                 "media? A proof-of-concept study", "European Radiology Experimental (Eur Radiol Exp)",
                 "10.1186/s41747-026-00681-7"),
    "001": Paper("Aurora Rofena, Valerio Guarrasi, Marina Sarli, Claudia Lucia Piccolo, Matteo Sammarra, Bruno "
                 "Beomonte Zobel, Paolo Soda", "2024",
                 "A Deep Learning Approach for Virtual Contrast Enhancement in Contrast Enhanced Spectral Mammography",
                 "Computerized Medical Imaging and Graphics 116:102398 (as 002 and 000 cite it; the text names none)",
                 "10.1016/j.compmedimag.2024.102398 (printed in 000's references, not in 001)"),
    "002": Paper("Aurora Rofena, Arianna Manchia, Claudia Lucia Piccolo, Bruno Beomonte Zobel, Paolo Soda, Valerio "
                 "Guarrasi", "2025",
                 "Lesion-Aware Generative Artificial Intelligence for Virtual Contrast-Enhanced Mammography in "
                 "Breast Cancer", NOT_GIVEN, NOT_GIVEN),
    "003": Paper("Mohammad Hosseinipour, Luca Bergamin, Harel Kotler, Gisella Gennaro, Fabio Aiolli", "2024",
                 "Addressing Challenges in Image Translation for Contrast-Enhanced Mammography Using Generative "
                 "Adversarial Networks", "EasyChair preprint (November 26, 2024)", NOT_GIVEN),
    "004": Paper("Ana C. Perre, Luís A. Alexandre, Luís C. Freire", NOT_GIVEN,
                 "Are Virtual DES Images a Valid Alternative to the Real Ones?",
                 f"{NOT_GIVEN} (a journal template, \"Journal Name\" left unfilled)", NOT_GIVEN),
}
#: How people cite them: "Rofena et al. 2024".
PAPERS = {code: paper.short for code, paper in CITATIONS.items()}
_PAPER_FILE = re.compile(r"\b(00[0-4])_[0-9a-f]+\.txt")


def cite_papers(text: str) -> str:
    """`text` with each paper file name ("001_851b294891272478.txt") as its citation ("Rofena et al. 2024 (001)")."""
    return _PAPER_FILE.sub(lambda m: f"{PAPERS[m.group(1)]} ({m.group(1)})", text)


def did_you_mean(name: str, valid) -> str:
    """ "did you mean 'demo'? " when a valid name is close to the mistyped `name` (difflib), else "": the one
    suggestion of every name a user types (presets, recipes, networks, choices of TrainConfig fields)."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


_MODELS, _RECIPES = "VirtualContrastTraining.models.builders", "VirtualContrastTraining.recipes"

# What is trained and how (recipes/): networks + losses + optimisers of one method.
RECIPES = {
    "cyclegan": Entry("CycleGAN", f"{_RECIPES}.cyclegan:CycleGAN", "001, 002, 000"),
    "pix2pix": Entry("Pix2Pix", f"{_RECIPES}.pix2pix:Pix2Pix", "001, 003"),
    "supervised": Entry("supervised", f"{_RECIPES}.supervised:Supervised", "001 (Autoencoder), 004 (U-Net/PT)"),
}

# Generators, called as builder(config, final) with final the output activation ("sigmoid" or "tanh").
GENERATORS = {
    "resnet": Entry("ResNet", f"{_MODELS}:resnet", "001, 002, 000"),
    "unet": Entry("U-Net", f"{_MODELS}:pix2pix_unet", "001, 003 (U-Net 512)"),
    "ronneberger-unet": Entry("U-Net", f"{_MODELS}:ronneberger_unet", "004 (U-Net/PT)"),
    "attention-unet": Entry("Attention U-Net", f"{_MODELS}:attention_unet", "003"),
    "iamnet": Entry("IAMNet", f"{_MODELS}:iamnet", "003"),
    "autoencoder": Entry("Autoencoder", f"{_MODELS}:autoencoder", "001"),
}

# Discriminators, called as builder(config, input_nc).
DISCRIMINATORS = {
    "patchgan": Entry("70x70 PatchGAN", f"{_MODELS}:patchgan", "001, 002, 003"),
    "zormpas": Entry("three stride-2 blocks + conv", f"{_MODELS}:zormpas", "000"),
}

# Plain choices, implemented where they act: the adversarial loss (recipes/losses.py), the normalisation
# layer (models/networks.norm_layer) and the data pipeline (train.py: resize, or 000's patches).
GAN_LOSSES = ("lsgan", "bce")
NORMS = ("instance", "batch")
PIPELINES = ("resize", "patches")
# Fields that do not change the method: a run differing from its preset only here is not modified (another seed
# repeats the preset; the config keeps its value).
DESCRIPTIVE_FIELDS = ("preset", "description", "source", "seed")


def model_family(config: dict[str, Any]) -> str:
    """Human name of the method a (saved) config trains, e.g. "Seg-CycleGAN", "Pix2Pix IAMNet, tau 2".

    Used in tables, synthetic image metadata and DICOM descriptions, so that
    two models of one comparison never share a name.
    """
    recipe, generator = config.get("recipe", "cyclegan"), config.get("generator", "resnet")
    generator_title = GENERATORS[generator].title if generator in GENERATORS else generator
    if recipe == "cyclegan":
        name = "Seg-CycleGAN" if float(config.get("gamma_lesion", 0) or 0) > 0 else "CycleGAN"
        if config.get("pipeline") == "patches":
            name = f"patch {name}"
    elif recipe == "pix2pix":
        name = f"Pix2Pix {generator_title}"
    else:
        name = generator_title
    tau = float(config.get("tau", 0) or 0)
    return f"{name}, tau {tau:g}" if tau > 0 and recipe != "cyclegan" else name


def preset_changes(config: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """The fields of a (saved) config whose values differ from its preset's, in the config's order (both as
    TrainConfig.to_dict gives them): the `--set` overrides that changed something."""
    return {k: v for k, v in config.items() if k not in DESCRIPTIVE_FIELDS and k in preset and preset[k] != v}


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def model_name(config: dict[str, Any], changes: dict[str, Any]) -> str:
    """The name of a model in tables and provenance: "Seg-CycleGAN (rofena2025-segcyclegan-g35)" as its preset
    trains it, "Seg-CycleGAN, from rofena2025-segcyclegan-g35, modified: image_size 64, ngf 8" otherwise, so a
    modified run is never reported under its preset's name; "(custom)" without a preset."""
    family, preset = model_family(config), config.get("preset") or ""
    if not preset:
        return f"{family} (custom)"
    if not changes:
        return f"{family} ({preset})"
    return f"{family}, from {preset}, modified: " + ", ".join(f"{k} {_value(v)}" for k, v in changes.items())
