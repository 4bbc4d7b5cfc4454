#!/usr/bin/env bash
# Training data for the alanine-dipeptide models: 4 x 25 ns of capped ACE-ALA-NME at 310 K
# (amber14-all + OBC2, LangevinMiddleIntegrator 0.5 fs, 0.3/ps, Reference platform), frames every
# 1 ps, one trajectory started in each basin (alphaR, beta, alphaL, C7ax). Two processes at a time,
# advancing together in 1 ns rounds. It survives logging out; running it again resumes every
# trajectory from its last checkpoint. See docs/data.md.
set -euo pipefail
cd "$(dirname "$0")/.."
output=data/alanine-dipeptide
mkdir -p "$output"
setsid nohup nice -n 10 timewarp simulate A \
    --start alphaR --start beta --start alphaL --start C7ax \
    --length-ns 25 --processes 2 --round-ns 1 \
    -o "$output" >> "$output/simulate.log" 2>&1 < /dev/null &
echo "started in the background (process group $!); follow it with: timewarp info $output"
