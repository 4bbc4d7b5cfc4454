#!/usr/bin/env bash
# Training data for transferable models: the training sequences of a committed split
# (openmm_timewarp/data/dipeptide_split.json or tetrapeptide_split.json), amber14-all + OBC2,
# 310 K, LangevinMiddleIntegrator 0.5 fs, 0.3/ps, Reference platform, frames every 1 ps, one
# trajectory per sequence from an extended chain, in OUTPUT/<SEQUENCE>/. See docs/data.md.
#
#   examples/generate_peptide_data.sh [--capped] [--start BASIN] [-o OUTPUT] SPLIT COUNT LENGTH_NS [...]
#       SPLIT is dipeptides or tetrapeptides; the first COUNT training sequences, one process at a
#       time, in rounds: every sequence is brought to the first length before any goes to the
#       second, and so on (so that data read early covers every sequence). Running it again
#       resumes every trajectory from its last checkpoint; a longer length extends finished ones.
#       A sequence that fails is reported and the others go on (exit status 1 at the end);
#       an interruption (Ctrl-C, a signal) stops the script at once.
#
#   examples/generate_peptide_data.sh [--capped] [--start BASIN] [-o OUTPUT] --task SPLIT LENGTH_NS [...]
#       job-array mode: training sequence number $SLURM_ARRAY_TASK_ID (or $TASK_INDEX, counted
#       from 0) to each length in turn, e.g. with SLURM
#         sbatch --array=0-199 --cpus-per-task=1 \
#             --wrap "examples/generate_peptide_data.sh --task tetrapeptides 0.5"
#       Resubmitting the same array resumes every task from its checkpoints.
#
# Termini are zwitterionic (NH3+ ... COO-, as Timewarp's 2AA and 4AA data) unless --capped
# (ACE-...-NME); OUTPUT defaults to data/SPLIT, or data/SPLIT-capped with --capped. With
# --start BASIN (alphaR, beta, alphaL, C7ax: `timewarp simulate --start`; repeatable) one
# trajectory per basin starts there instead, next to any extended one in OUTPUT/<SEQUENCE>/ (one
# molecule, one training folder): alphaL starts give a model data in the phi > 0 basins that runs
# from extended chains rarely reach (docs/training.md, "Round 2: phi > 0 starts").
USAGE_LINES='7p;15p'
source "$(dirname "$0")/_common.sh"

termini=zwitterionic
start=()
output=
task=false
own_option() {
    case "$1" in
        --capped) termini=capped; taken=1 ;;
        --task) task=true; taken=1 ;;
        --start) start+=(--start "${2:?--start needs a basin}"); taken=2 ;;
    esac
}
parse_options "$@"
set -- "${operands[@]}"
[[ $# -ge 2 ]] || usage
split=$1
shift
require_split "$split"
suffix=$([[ $termini == capped ]] && echo -capped || true)
output=${output:-data/$split$suffix}
mkdir -p "$output"

simulate() {  # sequence length_ns
    timewarp simulate "$1" --termini "$termini" "${start[@]}" --length-ns "$2" --no-progress \
        -o "$output/$1"
}

if $task; then
    index=${SLURM_ARRAY_TASK_ID:-${TASK_INDEX:?set SLURM_ARRAY_TASK_ID or TASK_INDEX}}
    sequence=$(timewarp "$split" --list train --start "$index" --count 1)
    for length in "$@"; do
        echo "$(date -u +%FT%TZ) $sequence ($termini) to $length ns in $output"
        time simulate "$sequence" "$length"
    done
    exit 0
fi

count=$1
shift
[[ $# -ge 1 ]] || usage
sequences=$(timewarp "$split" --list train --count "$count")
echo "$(date -u +%FT%TZ) $(wc -w <<< "$sequences") $split ($termini) to $* ns in $output"
failed=()
for length in "$@"; do
    for sequence in $sequences; do
        echo "$(date -u +%FT%TZ) $sequence to $length ns"
        status=0
        time simulate "$sequence" "$length" || status=$?
        if ((status >= 128)); then  # interrupted: stop here, rerunning resumes
            exit "$status"
        elif ((status != 0)); then
            echo "$(date -u +%FT%TZ) $sequence failed (exit status $status)" >&2
            failed+=("$sequence@$length")
        fi
    done
done
if ((${#failed[@]})); then
    echo "$(date -u +%FT%TZ) done; failed: ${failed[*]} (run again to retry)" >&2
    exit 1
fi
echo "$(date -u +%FT%TZ) done"
