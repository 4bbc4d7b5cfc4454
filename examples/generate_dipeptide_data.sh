#!/usr/bin/env bash
# Training data for the transferable dipeptide model: zwitterionic dipeptides from the training half
# of the committed split (openmm_timewarp/dipeptide_split.json), amber14-all + OBC2, 310 K,
# LangevinMiddleIntegrator 0.5 fs, 0.3/ps, Reference platform, frames every 1 ps, one trajectory
# per sequence from an extended chain, in data/dipeptides/<SEQUENCE>/. See docs/data.md.
#
#   examples/generate_dipeptide_data.sh COUNT LENGTH_NS [LENGTH_NS ...]
#       the first COUNT training sequences, one process at a time, in rounds: every sequence is
#       brought to the first length before any goes to the second, and so on (so that data read
#       early covers every sequence). Running it again resumes from the last checkpoints; a longer
#       length extends finished trajectories.
#
# On a cluster, one sequence per job array task (the same recipe, unchanged), e.g. with SLURM:
#   sbatch --array=0-199 --cpus-per-task=1 --wrap "examples/generate_dipeptide_data.sh --task 1"
# where --task LENGTH_NS simulates training sequence number $SLURM_ARRAY_TASK_ID.
set -euo pipefail
cd "$(dirname "$0")/.."
output=${DIPEPTIDE_DATA:-data/dipeptides}
TIMEFORMAT="%R s wall, %U s user, %S s system"
mkdir -p "$output"

simulate() {  # sequence length_ns
    timewarp simulate "$1" --termini zwitterionic --length-ns "$2" \
        --no-progress -o "$output/$1"
}

if [[ "${1:-}" == "--task" ]]; then
    length=$2
    sequence=$(timewarp dipeptides --list train --start "$SLURM_ARRAY_TASK_ID" --count 1)
    simulate "$sequence" "$length"
    exit 0
fi

count=$1
shift
sequences=$(timewarp dipeptides --list train --count "$count")
for length in "$@"; do
    for sequence in $sequences; do
        echo "$(date -u +%FT%TZ) $sequence to $length ns"
        time simulate "$sequence" "$length"
    done
done
echo "$(date -u +%FT%TZ) done"
