# The comparison, in one place: compare-array.sbatch, compare-collect.sbatch and submit.sh all read it, so the
# plan, every run and the collection are made with the very same options (the plan's fingerprint checks it).
# Edit the presets, your manifest and the folder; add --set FIELD=VALUE options as you would to `compare`.
OUT="$HOME/comparisons/table1"
COMPARE=(virtual-contrast compare
    --presets rofena2024-cyclegan,rofena2025-segcyclegan-g35,rofena2025-segcyclegan-g100
    --manifest "$HOME/cesm/manifest.csv"
    --out "$OUT"
    --folds 10)

# Your Python environment with VirtualContrast installed (a virtualenv, conda, or a module of your cluster).
source "$HOME/virtual-contrast/.venv/bin/activate"
