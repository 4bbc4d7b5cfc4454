#!/usr/bin/env bash
# Held-out evaluation of the transferable dipeptide model (docs/benchmarks.md, "Held-out dipeptides").
#
#   examples/heldout_evaluation.sh references COUNT LENGTH_NS [LENGTH_NS ...]
#       reference MD of the first COUNT sequences of the held-out evaluation order
#       (`timewarp dipeptides --list held-out --shuffle 1`): zwitterionic,
#       amber14-all + OBC2, 310 K, bonds to hydrogen constrained, 2 fs, two trajectories per
#       sequence (from the beta and alphaR basins), in data/heldout-reference/<SEQUENCE>/; in rounds,
#       every sequence brought to each length before the next; rerunning resumes.
#   examples/heldout_evaluation.sh benchmark COUNT MODEL BUDGET_S
#       `timewarp benchmark` of each sequence against its reference: Timewarp MH and exploration
#       with MODEL, and md-2fs-hbonds, BUDGET_S wall seconds each, in runs/heldout/<SEQUENCE>/;
#       then the table of all of them (bench/heldout_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
references=${HELDOUT_REFERENCES:-data/heldout-reference}
reports=${HELDOUT_REPORTS:-runs/heldout}
TIMEFORMAT="%R s wall, %U s user, %S s system"

mode=$1
count=$2
shift 2
sequences=$(timewarp dipeptides --list held-out --shuffle 1 --count "$count")
case "$mode" in
references)
    for length in "$@"; do
        for sequence in $sequences; do
            echo "$(date -u +%FT%TZ) $sequence to $length ns"
            time timewarp simulate "$sequence" --termini zwitterionic \
                --start beta --start alphaR --length-ns "$length" --timestep-fs 2 \
                --hydrogen-constraints --no-progress -o "$references/$sequence"
        done
    done
    ;;
benchmark)
    model=$1
    budget=$2
    for sequence in $sequences; do
        echo "$(date -u +%FT%TZ) benchmark $sequence"
        timewarp benchmark "$sequence" --termini zwitterionic --model "$model" \
            --reference "$references/$sequence" --budget "$budget" --no-progress \
            --samplers timewarp timewarp-exploration md-2fs-hbonds -o "$reports/$sequence" >/dev/null
    done
    python bench/heldout_table.py $(for s in $sequences; do echo "$reports/$s"; done)
    ;;
*)
    echo "usage: $0 references COUNT LENGTH_NS... | benchmark COUNT MODEL BUDGET_S" >&2
    exit 2
    ;;
esac
