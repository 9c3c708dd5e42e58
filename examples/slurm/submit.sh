#!/bin/bash
# Plan the comparison, submit one array task per run and the collection after them:
#     cd examples/slurm && bash submit.sh
# Run it again after a failure or a time limit: finished runs are reused, stopped ones resumed.
set -euo pipefail
cd "$(dirname "$0")"
source comparison.sh
mkdir -p logs

# Checks every image, writes OUT/folds/ and OUT/plan.json, prints the numbered runs.
"${COMPARE[@]}" --plan
runs=$(python -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["runs"]))' "$OUT/plan.json")

array=$(sbatch --parsable --array="0-$((runs - 1))" compare-array.sbatch)
sbatch --dependency="afterok:${array}" compare-collect.sbatch
echo "submitted $runs runs as array job $array; the table follows when all have finished"
