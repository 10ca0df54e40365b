#!/usr/bin/env bash
# The CPU example runs of the user guide (docs/user-guide.md): on isbi2012_em and
# t98g_phase from ../shared/data, a segmentation feature extractor, registration
# models with deepsim and ncc, and their evaluation against the identity baseline.
# Usage: bash scripts/example-runs.sh [OUT_DIR]   (about 20 minutes per dataset on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
out=${1:-runs}
ds=.venv/bin/deepsim
common=(--channels 32,64,128 --crop 128 --batch-size 4 --lr 3e-4 --device "${DEVICE:-auto}")
mkdir -p "$out/isbi" "$out/t98g"

# ISBI 2012 EM (stands in for Platelet-EM): features on 0:20, registration on 0:25, test 25:30
$ds train-features "$data/isbi2012_em" --frames 0:20 --val-frames 20:25 --steps 1500 \
    "${common[@]}" --out "$out/isbi/features.pt"
for metric in deepsim ncc; do
    $ds train "$data/isbi2012_em" --metric "$metric" --features "$out/isbi/features.pt" \
        --frames 0:25 --steps 2500 "${common[@]}" --out "$out/isbi/$metric.pt"
done
$ds evaluate "$data/isbi2012_em" --frames 25:30 --baseline identity \
    --models "$out/isbi/deepsim.pt" "$out/isbi/ncc.pt" --out "$out/isbi/eval"

# T98G phase contrast (stands in for PhC-U373), cell foreground labels:
# features on 0:16, registration on 0:20, test 20:24
$ds train-features "$data/t98g_phase" --labels foreground --frames 0:16 --val-frames 16:20 \
    --steps 1500 "${common[@]}" --out "$out/t98g/features.pt"
for metric in deepsim ncc; do
    $ds train "$data/t98g_phase" --labels foreground --metric "$metric" \
        --features "$out/t98g/features.pt" --frames 0:20 --steps 2500 "${common[@]}" \
        --out "$out/t98g/$metric.pt"
done
$ds evaluate "$data/t98g_phase" --labels foreground --frames 20:24 --baseline identity \
    --models "$out/t98g/deepsim.pt" "$out/t98g/ncc.pt" --out "$out/t98g/eval"
