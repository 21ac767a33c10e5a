#!/usr/bin/env python3
"""Dump how the Hugging Face `tokenizers` library classifies every Unicode scalar.

For each scalar (surrogates excluded) it records what the BERT normalizer steps and pre-tokenizer
do with it and which regex classes the byte-level pre-tokenizers put it in. Only scalars whose
behaviour differs from the default (kept, unchanged, a "word" character, in no regex class) are
written, one line each: `hex<TAB>clean<TAB>cjk<TAB>strip<TAB>lower<TAB>bert<TAB>classes`
where the strings are written as space-separated hex scalars ('-' = unchanged, '' = removed).
`frugal-tokenize --unicode-classes` writes the same format from the Swift implementation, and
compare_tokenizers.sh diffs the two.

Usage: python3 scripts/unicode_classes.py OUT.tsv
"""
import sys
from tokenizers import normalizers, pre_tokenizers, Regex

clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
cjk = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
bert = pre_tokenizers.BertPreTokenizer()
splits = {
    "L": pre_tokenizers.Split(Regex(r"\p{L}"), behavior="removed"),
    "N": pre_tokenizers.Split(Regex(r"\p{N}"), behavior="removed"),
    "S": pre_tokenizers.Split(Regex(r"\s"), behavior="removed"),
}
digits = pre_tokenizers.Digits(individual_digits=True)


def hexs(s, c):
    if s == c:
        return "-"
    return " ".join("%X" % ord(x) for x in s)


def main():
    out = open(sys.argv[1], "w")
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        f_clean = hexs(clean.normalize_str(c), c)
        f_cjk = "1" if cjk.normalize_str(c) != c else "0"
        f_strip = hexs(strip.normalize_str(c), c)
        f_lower = hexs(lower.normalize_str(c), c)
        pieces = [p for p, _ in bert.pre_tokenize_str("a" + c + "a")]
        f_bert = "w" if pieces == ["a", "a"] else ("p" if pieces == ["a", c, "a"] else ("o" if len(pieces) == 1 else "?" + repr(pieces)))
        cls = "".join(k for k, sp in splits.items() if sp.pre_tokenize_str(c) == [])
        if len(digits.pre_tokenize_str("a" + c + "a")) == 3:
            cls += "D"
        row = (f_clean, f_cjk, f_strip, f_lower, f_bert, cls)
        if row != ("-", "0", "-", "-", "o", ""):
            out.write("%X\t%s\n" % (cp, "\t".join(row)))
    out.close()


if __name__ == "__main__":
    main()
