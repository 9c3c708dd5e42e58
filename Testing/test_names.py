"""Names and provenance that tell the truth (issue 15): a run that changed its preset is named so, its
provenance holds what changed and the devices used, and `report` refuses to pool folders that differ.
The papers' citations (issue 16): docs/models.md's table is registries.CITATIONS, cited as "Rofena et al. 2024".
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import make_tiny_model
from hostile import run_cli
from VirtualContrastTraining.config.presets import PRESETS, resolve_config
from VirtualContrastTraining.config.registries import CITATIONS, PAPERS, cite_papers, model_name, preset_changes
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest

PRESET = "rofena2025-segcyclegan-g35"
TINY = ("--preset", "demo", "--epochs", "1", "--set", "image_size=48", "--set", "ngf=4", "--set", "n_blocks=1",
        "--set", "batch_size=2", "--device", "cpu")


def _name(preset: str, overrides: dict) -> str:
    config = resolve_config(preset, overrides).to_dict()
    return model_name(config, preset_changes(config, PRESETS[preset].to_dict()))


def test_a_modified_run_is_not_named_as_its_preset():
    assert _name(PRESET, {}) == f"Seg-CycleGAN ({PRESET})"
    modified = _name(PRESET, {"image_size": "64", "ngf": "8"})
    assert modified == f"Seg-CycleGAN, from {PRESET}, modified: ngf 8, image_size 64"
    # an override equal to the preset's value changes nothing; a description or another seed never counts
    same = {"ngf": str(PRESETS[PRESET].ngf), "description": "mine", "seed": "7"}
    assert _name(PRESET, same) == f"Seg-CycleGAN ({PRESET})"
    assert _name(PRESET, {"lr": "2e-4"}).endswith("modified: lr 0.0002")
    assert model_name(replace(PRESETS[PRESET], preset="").to_dict(), {}) == "Seg-CycleGAN (custom)"


def _manifest(small_phantom, tmp_path):
    cases = read_manifest(small_phantom)
    return write_manifest(tmp_path / "manifest.csv", [replace(c, split=s) for c, s in
                                                      zip(cases, ["train"] * 2 + ["val"] * 2 + ["test"] * 2)])


def test_training_records_changes_and_device_and_report_refuses_mixed_sizes(small_phantom, tmp_path):
    manifest = _manifest(small_phantom, tmp_path)
    trained = run_cli("train", *TINY, "--manifest", manifest, "--out", tmp_path / "run")
    assert trained.code == 0, trained.stderr + trained.escaped
    sidecar = json.loads((tmp_path / "run" / "model.json").read_text())
    assert sidecar["device"] == "cpu"
    assert sidecar["preset_changes"] == {"ngf": 4, "n_blocks": 1, "image_size": 48, "batch_size": 2, "epochs": 1}

    evaluated = run_cli("evaluate", "--model", tmp_path / "run", "--manifest", manifest, "--out", tmp_path / "ev48",
                        "--device", "cpu")
    assert evaluated.code == 0, evaluated.stderr + evaluated.escaped
    name = "Seg-CycleGAN, from demo, modified: ngf 4, n_blocks 1, image_size 48, batch_size 2, epochs 1"
    assert f"| {name} | 2 |" in evaluated.stdout
    provenance = json.loads((tmp_path / "ev48" / "provenance.json").read_text())
    assert provenance["model_name"] == name and provenance["preset_changes"] == sidecar["preset_changes"]
    assert (provenance["training_device"], provenance["device"]) == ("cpu", "cpu")
    page = (tmp_path / "ev48" / "report.html").read_text(encoding="utf-8")
    assert "<td>ngf 4, n_blocks 1, image_size 48, batch_size 2, epochs 1</td>" in page

    # Another model evaluated at 64 pixels on the same cases: one table would mix two image sizes.
    other = make_tiny_model(tmp_path / "other", image_size=64)
    assert run_cli("evaluate", "--model", other, "--manifest", manifest, "--out", tmp_path / "ev64",
                   "--device", "cpu").code == 0
    refused = run_cli("report", "--evaluation", tmp_path / "ev48", tmp_path / "ev64", "--out", tmp_path / "r.html")
    assert refused.code != 0 and not refused.escaped and not (tmp_path / "r.html").exists()
    assert f"image size: 48 ({tmp_path / 'ev48'}); 64 ({tmp_path / 'ev64'})" in refused.stderr
    assert "--allow-mixed" in refused.stderr and "cases:" not in refused.stderr
    allowed = run_cli("report", "--evaluation", tmp_path / "ev48", tmp_path / "ev64", "--out", tmp_path / "r.html",
                      "--allow-mixed")
    assert allowed.code == 0, allowed.stderr + allowed.escaped
    assert "Pooled although they differ (--allow-mixed): image size: 48" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("document, heading", [("docs/models.md", "## Papers"), ("README.md", "## Data and citations")])
def test_the_citations_tables_of_the_docs_are_the_registry(document, heading):
    """The citations tables of docs/models.md and README, row by row, hold exactly what CITATIONS holds (one
    place: the registry; the documents show it)."""
    text = (Path(__file__).resolve().parents[1] / document).read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    assert rows[0] == ["code", "authors", "year", "title", "venue", "DOI"]
    assert rows[2:] == [[code, p.authors, p.year, p.title, p.venue, p.doi] for code, p in CITATIONS.items()]


def test_papers_are_cited_by_surname_and_year_where_the_paper_gives_one():
    assert PAPERS == {"000": "Zormpas-Petridis et al. 2026", "001": "Rofena et al. 2024", "002": "Rofena et al. 2025",
                      "003": "Hosseinipour et al. 2024", "004": "Perre et al."}
    assert cite_papers("see 002_b08fa9e9522d5d9b.txt") == "see Rofena et al. 2025 (002)"
    assert all(re.fullmatch(r"10\.\d{4,5}/\S+( \(.*\))?|not given in the paper", p.doi) for p in CITATIONS.values())
