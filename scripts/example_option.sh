# Sourced by the example scripts: sets `example` from `--example NAME` (default yunshan) and refuses
# anything else, naming the script ($0) in the usage line.
example=yunshan
while [ $# -gt 0 ]; do
    case "$1" in
        --example) example=${2:-}; shift 2 ;;
        --example=*) example=${1#--example=}; shift ;;
        *) echo "usage: bash $0 [--example yunshan|hefeng]" >&2; exit 2 ;;
    esac
done
case "$example" in
    yunshan|hefeng) ;;
    *) echo "error: no example '$example'; choose yunshan (English) or hefeng (Traditional Chinese)" >&2; exit 2 ;;
esac
