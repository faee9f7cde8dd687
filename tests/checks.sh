# The checks the shell tests (the boot test, the container test) are made of: each
# prints "ok" or "FAIL" with what it saw; the caller counts `checks` and lists `failed`
# at the end. Sourced, not run.

checks=0
failed=()
ok() { checks=$((checks + 1)); echo "ok    $1"; }
bad() {
    checks=$((checks + 1))
    failed+=("$1")
    echo "FAIL  $1${2:+ — $2}"
}
# check WHAT CMD...: CMD succeeds.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else bad "$what" "$(tail -6 <<<"$out" | tr '\n' ' ')"; fi
}
# fails WHAT CMD...: CMD fails.
fails() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then bad "$what" "it succeeded: $(tail -2 <<<"$out" | tr '\n' ' ')"; else ok "$what"; fi
}
# same WHAT EXPECTED ACTUAL
same() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected '$2', got '$3'"; fi
}
# has WHAT NEEDLE TEXT
has() {
    if grep -qF -- "$2" <<<"$3"; then ok "$1"; else bad "$1" "no '$2' in: $(head -c 600 <<<"$3" | tr '\n' ' ')"; fi
}
# lacks WHAT NEEDLE TEXT
lacks() {
    if grep -qF -- "$2" <<<"$3"; then bad "$1" "'$2' in: $(grep -F -- "$2" <<<"$3" | head -3 | tr '\n' ' ')"; else ok "$1"; fi
}
