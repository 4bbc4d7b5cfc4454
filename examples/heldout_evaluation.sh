#!/usr/bin/env bash
# Held-out evaluation of a transferable model (docs/benchmarks.md, "Held-out evaluation").
#
#   examples/heldout_evaluation.sh references COUNT LENGTH_NS [LENGTH_NS ...]
#       reference MD of the COUNT peptides drawn from the held-out list
#       (`timewarp heldout --held-out LIST --count COUNT --draw-seed SEED --print-peptides`):
#       zwitterionic, amber14-all + OBC2, 310 K, bonds to hydrogen constrained, 2 fs, two
#       trajectories per sequence (from the beta and alphaR basins), in
#       data/heldout-reference/<SEQUENCE>/; in rounds, every sequence brought to each length before
#       the next; rerunning resumes.
#   examples/heldout_evaluation.sh evaluate COUNT MODEL MD_BUDGET_S TIMEWARP_BUDGET_S [EXPLORATION_BUDGET_S]
#       `timewarp heldout` on the same peptides against those references: per peptide one long
#       md-4fs-hmr run of MD_BUDGET_S wall seconds, then Timewarp MH with MODEL (its proposal
#       compiled for this CPU, `--compiled`, before the timed window) for TIMEWARP_BUDGET_S (and
#       exploration mode for EXPLORATION_BUDGET_S); results and table.md in
#       runs/heldout-<LIST>/; rerunning resumes.
#
# HELDOUT_LIST (dipeptides) and HELDOUT_SEED (1) choose the list and the draw, HELDOUT_SKIP (0)
# leaves out the first peptides of that draw (an earlier table's: the next COUNT are fresh);
# HELDOUT_JOBS (1) evaluates that many peptides at once, one process each (one per free core).
set -euo pipefail
cd "$(dirname "$0")/.."
list=${HELDOUT_LIST:-dipeptides}
seed=${HELDOUT_SEED:-1}
skip=${HELDOUT_SKIP:-0}
references=${HELDOUT_REFERENCES:-data/heldout-reference}
reports=${HELDOUT_REPORTS:-runs/heldout-$list}
jobs=${HELDOUT_JOBS:-1}
TIMEFORMAT="%R s wall, %U s user, %S s system"

mode=$1
count=$2
shift 2
case "$mode" in
references)
    sequences=$(timewarp heldout --held-out "$list" --count "$count" --draw-seed "$seed" \
        --skip "$skip" --print-peptides)
    for length in "$@"; do
        for sequence in $sequences; do
            echo "$(date -u +%FT%TZ) $sequence to $length ns"
            time timewarp simulate "$sequence" --termini zwitterionic \
                --start beta --start alphaR --length-ns "$length" --timestep-fs 2 \
                --hydrogen-constraints --no-progress -o "$references/$sequence"
        done
    done
    ;;
evaluate)
    exploration=()
    if [ $# -ge 4 ]; then exploration=(--exploration-budget "$4"); fi
    time timewarp heldout --held-out "$list" --count "$count" --draw-seed "$seed" --skip "$skip" \
        --model "$1" --references "$references" --md-budget "$2" --timewarp-budget "$3" \
        "${exploration[@]}" --compiled --jobs "$jobs" --no-progress -o "$reports"
    ;;
*)
    echo "usage: $0 references COUNT LENGTH_NS... | evaluate COUNT MODEL MD_BUDGET_S TIMEWARP_BUDGET_S [EXPLORATION_BUDGET_S]" >&2
    exit 2
    ;;
esac
