# Sourced by the example scripts that take options and a SPLIT, first thing after their header
# and after setting USAGE_LINES (the `sed -n` lines of their header that say how to call them):
# strict mode, the repository root as working folder, `time`'s format, and the helpers below.
set -euo pipefail
cd "$(dirname "$0")/.."
TIMEFORMAT="%R s wall, %U s user, %S s system"

# The calling script's usage lines on stderr, then exit status 2.
usage() {
    sed -n "$USAGE_LINES" "$0" | sed 's/^#  *//' >&2
    exit 2
}

# parse_options ARGS...: the leading options of ARGS. Each goes first to the calling script's
# `own_option NAME [VALUE]`, which sets `taken` to the number of words it used (0: not one of
# its options); then -o/--output FOLDER sets `output`, -h/--help prints the usage, and any other
# option is refused. The operands that follow are left in the array `operands`.
parse_options() {
    while [[ $# -gt 0 ]]; do
        taken=0
        own_option "$@"
        if ((taken == 0)); then
            case "$1" in
                -o | --output) output=${2:?-o needs a folder}; taken=2 ;;
                -h | --help) usage ;;
                -*) echo "unknown option $1" >&2; usage ;;
                *) break ;;
            esac
        fi
        shift "$taken"
    done
    operands=("$@")
}

# require_split SPLIT: exit status 2 unless SPLIT names a committed split.
require_split() {
    case "$1" in
        dipeptides | tetrapeptides) ;;
        *) echo "SPLIT must be dipeptides or tetrapeptides, got '$1'" >&2; exit 2 ;;
    esac
}
