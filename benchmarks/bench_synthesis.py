"""Seconds to synthesize one full-size (2850 x 2394 at 0.1 mm) DES from its LE.

Times `Synthesizer.synthesize` end to end (read-free: preprocess, generator,
inverse preprocessing back to the LE's geometry) on a full-size phantom LE,
for a freshly initialised generator of each preset (weights do not change the
cost), or for a trained run given with --model.

    python benchmarks/bench_synthesis.py [--presets demo,rofena2025-segcyclegan-g35] [--model RUN] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np


def full_size_le():
    from VirtualContrastTraining.data.phantom import simulate_case

    case = simulate_case(np.random.default_rng(0), pixel_mm=0.1, laterality="L", view="MLO", density="c")
    return case.image(case.le)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="demo,rofena2025-segcyclegan-g35")
    parser.add_argument("--model", default="", help="a trained run folder instead of untrained presets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.synthesis import Synthesizer

    start = time.perf_counter()
    le = full_size_le()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"full-size phantom LE {le.shape[0]} x {le.shape[1]} simulated in {time.perf_counter() - start:.1f} s")
    synths = ([("trained " + args.model, Synthesizer.load(args.model, args.device))] if args.model
              else [(p, Synthesizer.untrained(resolve_config(p), (1700.0, 2400.0), args.device))
                    for p in args.presets.split(",")])
    print("| model | model input | s per image (best of %d) | output shape |" % args.repeats)
    print("|---|---|---|---|")
    for name, synth in synths:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = synth.synthesize(le)
            times.append(time.perf_counter() - t)
        assert out.shape == le.shape
        pp = synth.patch_pipeline
        model_input = (f"{pp.patch_size}² patches, stride {pp.sw_stride}" if pp else f"{synth.preprocess_config.size}²")
        print(f"| {name} | {model_input} | {min(times):.2f} | {out.shape[0]} x {out.shape[1]} |")


if __name__ == "__main__":
    main()
