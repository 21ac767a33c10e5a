#!/usr/bin/env bash
# Full comparison of FrugalData's tokenizers with Hugging Face `tokenizers` (pip install tokenizers gguf):
#   1. every Unicode scalar classified as the reference classifies it (scripts/unicode_classes.py);
#   2. token ids, decoded texts and pair encodings for the SST-2 and AG News test sets (all-MiniLM-L6-v2
#      WordPiece), 1,000 lines of tiny Shakespeare and 100 ten-line chunks (SmolLM2 BPE from the GGUF),
#      Unicode stress texts for both, and the same BPE vocabulary as tokenizer.json files in SmolLM2's,
#      GPT-2's, Llama 3's and Qwen 2's layouts (loader, prefix space, templates, Llama-3 pattern, ignore_merges, NFC).
# Prints the mismatch count of each set and the release encode time; exits 1 on any mismatch.
#
# The Swift side is `frugal tokenize` (or, in the tokenizers development package, `frugal-tokenize`);
# set TOKENIZE to another command to override. It must accept
#   --tokenizer PATH --texts-json FILE --json FILE --decoded FILE [--pairs-json FILE --pair-max-length N]
#   --time --quiet, and --unicode-classes FILE.
# Data under $FRUGAL_DATA (default ~/.cache/frugal-data); references go to $FRUGAL_TOKREF.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FRUGAL_DATA:-$HOME/.cache/frugal-data}"
REF="${FRUGAL_TOKREF:-/tmp/frugal-tokenizer-reference}"
export FRUGAL_TOKREF="$REF"
MINILM="$DATA/all-MiniLM-L6-v2/tokenizer.json"
GGUF="$DATA/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"

if [ -z "${TOKENIZE:-}" ]; then
    if grep -q '"frugal-tokenize"' Package.swift; then
        swift build -c release --product frugal-tokenize >/dev/null
        TOKENIZE="$(swift build -c release --show-bin-path)/frugal-tokenize"
    else
        swift build -c release --product frugal >/dev/null
        TOKENIZE="$(swift build -c release --show-bin-path)/frugal tokenize"
    fi
fi
python3 scripts/tokenizer_reference.py
OUT="$REF/swift"
mkdir -p "$OUT"
status=0

python3 scripts/unicode_classes.py "$OUT/unicode_hf.tsv"
$TOKENIZE --unicode-classes "$OUT/unicode_swift.tsv"
if cmp -s "$OUT/unicode_hf.tsv" "$OUT/unicode_swift.tsv"; then
    echo "unicode classes: 0 mismatches over all 1,112,064 scalars"
else
    echo "unicode classes: $(diff "$OUT/unicode_hf.tsv" "$OUT/unicode_swift.tsv" | grep -c '^[<>]') differing lines"
    status=1
fi

run() { # name tokenizer [pair length]
    local extra=()
    if [ -n "${3:-}" ]; then extra=(--pairs-json "$OUT/$1.pairs$3.json" --pair-max-length "$3"); fi
    $TOKENIZE --tokenizer "$2" --texts-json "$REF/$1.texts.json" --json "$OUT/$1.ids.json" \
        --decoded "$OUT/$1.decoded.json" --time --quiet "${extra[@]}" 2>&1 | sed "s/^/$1 /" | grep encode || true
}
run sst2 "$MINILM" 64
run agnews "$MINILM" 64
run unicode-wordpiece "$MINILM" 16
run shakespeare "$GGUF"
run shakespeare-chunks "$GGUF"
run unicode-bpe "$GGUF"
for v in smollm gpt2 llama3 qwen2; do run "bpe-$v" "$REF/bpe-$v.tokenizer.json"; done

python3 - "$REF" "$OUT" <<'PY' || status=1
import json, os, sys
ref, out = sys.argv[1:3]
bad = 0
for name in ["sst2", "agnews", "unicode-wordpiece", "shakespeare", "shakespeare-chunks", "unicode-bpe",
             "bpe-smollm", "bpe-gpt2", "bpe-llama3", "bpe-qwen2"]:
    texts = json.load(open(os.path.join(ref, name + ".texts.json")))
    row = []
    kinds = ["ids", "decoded"] + {"sst2": ["pairs64"], "agnews": ["pairs64"], "unicode-wordpiece": ["pairs16"]}.get(name, [])
    for kind in kinds:
        a = json.load(open(os.path.join(ref, "%s.%s.json" % (name, kind))))
        path = os.path.join(out, "%s.%s.json" % (name, kind))
        b = json.load(open(path)) if os.path.exists(path) else []
        n = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
        bad += n
        row.append("%s %d" % (kind, n))
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                print("  first %s mismatch, text %d: %r\n    ref   %s\n    swift %s" % (kind, i, texts[i][:200], str(x)[:300], str(y)[:300]))
                break
    print("%-20s %5d texts, mismatches: %s" % (name, len(texts), ", ".join(row)))
sys.exit(1 if bad else 0)
PY
exit "$status"
