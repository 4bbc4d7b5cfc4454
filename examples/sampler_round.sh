#!/usr/bin/env bash
# One round of "train -> sample -> retrain": Metropolis-Hastings chains of a trained model on
# the first COUNT training sequences of a committed split, as training data for the next model
# (docs/training.md, "Rounds: the sampler's chains as data"). Held-out sequences are never sampled.
#
#   examples/sampler_round.sh [options] ROUND MODEL SPLIT COUNT
#       ROUND names the round (its folder); MODEL is a model file or bundled name; SPLIT is
#       dipeptides or tetrapeptides. For each sequence, `timewarp sample MODEL SEQ --termini
#       zwitterionic` writes its chains to OUTPUT/ROUND/SEQ/<index>-SEQ/, one sequence at a
#       time; running the same command again resumes every chain from its checkpoint (and a
#       larger --steps extends them). At the end it prints the `timewarp train` command that
#       pools the MD data of each sequence with its chains.
#
# Options: --chains C (chains per sequence, default 2), --steps S (MH steps per chain, default
# 2000), --interval I (MH steps per saved frame, default 10), --md-data FOLDER (the MD data of
# examples/generate_peptide_data.sh, default data/SPLIT), -o OUTPUT (default data/rounds).
USAGE_LINES='6p;14,16p'
source "$(dirname "$0")/_common.sh"

chains=2
steps=2000
interval=10
md_data=
output=data/rounds
own_option() {
    case "$1" in
        --chains) chains=${2:?--chains needs a number}; taken=2 ;;
        --steps) steps=${2:?--steps needs a number}; taken=2 ;;
        --interval) interval=${2:?--interval needs a number}; taken=2 ;;
        --md-data) md_data=${2:?--md-data needs a folder}; taken=2 ;;
    esac
}
parse_options "$@"
set -- "${operands[@]}"
[[ $# -eq 4 ]] || usage
round=$1
model=$2
split=$3
count=$4
require_split "$split"
md_data=${md_data:-data/$split}
folder=$output/$round
mkdir -p "$folder"

# Training sequences only: `timewarp SPLIT --list train` never lists a held-out one.
sequences=$(timewarp "$split" --list train --count "$count")
echo "$(date -u +%FT%TZ) round $round: $chains chains x $steps steps of $model on" \
    "$(wc -w <<< "$sequences") $split in $folder"
data=()
for sequence in $sequences; do
    if [[ ! -d $md_data/$sequence ]]; then
        echo "no MD data $md_data/$sequence: generate it first" \
            "(examples/generate_peptide_data.sh)" >&2
        exit 1
    fi
    echo "$(date -u +%FT%TZ) $sequence"
    time timewarp sample "$model" "$sequence" --termini zwitterionic \
        --chains-per-peptide "$chains" --steps "$steps" --trajectory-interval "$interval" \
        --no-progress -o "$folder/$sequence"
    data+=("$md_data/$sequence" "$folder/$sequence")
done
echo "$(date -u +%FT%TZ) done. Train on MD + chains (add your architecture options) with:"
echo "timewarp train ${data[*]} --family ic-backbone -o train/round-$round"
