#!/usr/bin/env python3
"""Reference token ids from the Hugging Face `tokenizers` library (pip install tokenizers gguf).

Writes
  (a) full references for compare_tokenizers.sh into $FRUGAL_TOKREF (default /tmp/frugal-tokenizer-reference):
      <set>.texts.json (the texts), <set>.ids.json, <set>.decoded.json and, for WordPiece sets,
      <set>.pairs<N>.json (pairs (text i, text i+1) truncated and padded to N);
      sets: sst2 and agnews (all-MiniLM-L6-v2 WordPiece, SST-2 and AG News test sets),
      shakespeare (SmolLM2 BPE, the first 1,000 lines of tiny Shakespeare), shakespeare-chunks
      (the same lines as 100 texts of 10 lines, newlines kept), unicode-wordpiece / unicode-bpe.
  (b) committed fixtures in Tests/FrugalDataTests/Fixtures/tokenizers/ (--fixtures):
      minilm-vocab.txt       the MiniLM vocab.txt (checked equal to its tokenizer.json vocab)
      wordpiece-cases.json   ~150 texts with ids, decodes, pair and batch encodings
      bpe-cases.json         ~100 texts with ids and decodes, plus the subset of SmolLM2's
                             vocabulary and merges that reproduces them (checked here)
      pretokenizer-cases.json  GPT-2 / SmolLM / Llama-3 / Qwen-2 word splits of tricky strings

Usage: python3 scripts/tokenizer_reference.py [--fixtures]
"""
import json
import os
import random
import sys

from tokenizers import Tokenizer, AddedToken, Regex, decoders, models, pre_tokenizers

DATA = os.environ.get("FRUGAL_DATA", os.path.expanduser("~/.cache/frugal-data"))
OUT = os.environ.get("FRUGAL_TOKREF", "/tmp/frugal-tokenizer-reference")
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "FrugalDataTests", "Fixtures", "tokenizers")
MINILM = os.path.join(DATA, "all-MiniLM-L6-v2")
GGUF = os.path.join(DATA, "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Hand-written texts that exercise Unicode handling (both tokenizers).
UNICODE_TEXTS = [
    "Café naïve résumé façade Ångström ÉCOLE Über",
    "İstanbul ΣΊΣΥΦΟΣ ǅemal ẞtraße ﬁnancial ﬀ",
    "我爱北京天安门。中文，标点！",
    "日本語のテキストとカタカナ ー ｶﾀｶﾅ",
    "한국어 텍스트입니다",
    "Россия и Українa, Ελληνικά",
    "مرحبا بالعالم ١٢٣ שלום עולם",
    "हिन्दी पाठ ক্ষ தமிழ் ไทย ภาษา",
    "Emoji: 😀👍🏽🇺🇸 and ❤️ 🥰 🫠 👩‍👩‍👧",
    "e\u0301 a\u0308 o\u0302\u0323 combining\u0301\u0302 marks",
    "zero\u200bwidth, soft\u00adhyphen, bom\ufeff, nbsp\u00a0here, ideographic\u3000space",
    "controls:\u0000\u0001\u0004\u0006\u001b\u007f\u0085\u009f end",
    "tabs\tand\nnewlines\r\nmixed  \t  spaces   ",
    "   leading and trailing spaces   ",
    "Numbers 12345 and 3.14159 and 1,000,000 and ½ ² ³ ① ⅷ ١٢٣ １２３",
    "Punctuation!!! ??? ... --- (parens) [brackets] {braces} <angles> \"quotes\" 'single' `tick`",
    "¿¡«»—–…‘’“”•·†‡§¶©®™°±×÷≠≤≥∞√∑∏",
    "I'm sure they'll say it's fine, don't you think? We've seen it. I'D SAY IT'S OK'S",
    "def foo(x):\n    return x ** 2  # comment\n\n\n\tpass",
    "https://example.com/path?query=1&b=2#frag user@mail.org",
    "[CLS] special [SEP] tokens [MASK] inline [UNK] [PAD] [cls] <|endoftext|><|im_start|>user\nhi<|im_end|>",
    "a" * 101,
    "b" * 100,
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "private\ue000use \U000f0000 replacement\ufffd char",
    "new unicode: \U00011938 \U0001fae8 \u0897 \U00016ff4",
    "\u166d \U000111c9 \u1734 \u1885",
    "x²+y³=z⁴ α≈β ∀x∈ℝ",
    "   ",
    "",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'ſ",
    "hello  world   again    !",
    "12abc34 a1b2c3 3rd 2nd 100km/h",
]


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))


def tsv_texts(path, header):
    lines = open(path, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if header:
        lines = lines[1:]
    return [line.rsplit("\t", 1)[0] for line in lines]


def minilm():
    tok = Tokenizer.from_file(os.path.join(MINILM, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def encode_pairs(tok, texts, max_length):
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    tok.enable_padding(length=max_length)
    encs = tok.encode_batch([(texts[i], texts[i + 1]) for i in range(len(texts) - 1)])
    tok.no_truncation()
    tok.no_padding()
    return [{"ids": e.ids, "type_ids": e.type_ids, "attention_mask": e.attention_mask} for e in encs]


def gguf_arrays():
    import gguf
    r = gguf.GGUFReader(GGUF)
    f = r.fields
    return (f["tokenizer.ggml.tokens"].contents(), f["tokenizer.ggml.merges"].contents(),
            f["tokenizer.ggml.token_type"].contents(), f["tokenizer.ggml.pre"].contents())


def smollm_tokenizer(vocab, merges, specials):
    """SmolLM2's tokenizer as its tokenizer.json defines it: Digits(individual) + ByteLevel, BPE, no unk."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def ids_of(tok, texts):
    return [e.ids for e in tok.encode_batch(texts)]


def decoded_of(tok, ids):
    return [tok.decode(x) for x in ids]


def write_set(name, tok, texts, pairs=None):
    ids = ids_of(tok, texts)
    write_json(os.path.join(OUT, name + ".texts.json"), texts)
    write_json(os.path.join(OUT, name + ".ids.json"), ids)
    write_json(os.path.join(OUT, name + ".decoded.json"), decoded_of(tok, ids))
    if pairs:
        write_json(os.path.join(OUT, "%s.pairs%d.json" % (name, pairs)), encode_pairs(tok, texts, pairs))
    print("%s: %d texts, %d tokens" % (name, len(texts), sum(map(len, ids))))
    return ids


def pick_wordpiece_cases(tok, texts, rng):
    """~60-80 data sentences covering accents, digits, long words, [UNK], heavy punctuation, plus random ones."""
    encs = tok.encode_batch(texts)
    feats = {
        "accents": lambda t, e: any(ord(c) > 127 for c in t),
        "digits": lambda t, e: any(c.isdigit() for c in t),
        "unk": lambda t, e: 100 in e.ids,
        "long word": lambda t, e: any(len(w) >= 14 for w in t.split()),
        "many pieces": lambda t, e: sum(tok.id_to_token(i).startswith("##") for i in e.ids) >= 6,
        "symbols": lambda t, e: any(c in t for c in "\\#$%&*+/<=>@^_`{|}~"),
        "long": lambda t, e: len(e.ids) > 60,
    }
    chosen = []
    for name, f in feats.items():
        cand = [i for i, (t, e) in enumerate(zip(texts, encs)) if f(t, e) and i not in chosen]
        cand.sort(key=lambda i: len(texts[i]))
        # short ones first, some random ones for variety
        pick = cand[:6] + rng.sample(cand[6:], min(4, max(0, len(cand) - 6)))
        chosen += pick
    rest = [i for i in range(len(texts)) if i not in chosen]
    chosen += rng.sample(rest, 10)
    return [texts[i] for i in chosen]


def bpe_subset(full_tok, vocab, merges, specials, texts):
    """The vocabulary and merges needed to reproduce `texts` exactly: every merge whose result is a
    substring of some word's byte-level string (a superset of the merges applied, so the merge order
    is unchanged), every token those merges mention, the byte symbols of the words, the specials."""
    pre = full_tok.pre_tokenizer
    words = set()
    for t in texts:
        # split out the special tokens first, as the tokenizer does
        pieces = [t]
        for s in specials:
            pieces = [q for p in pieces for q in p.split(s)]
        for p in pieces:
            for w, _ in pre.pre_tokenize_str(p):
                words.add(w)
    substrings = set()
    for w in words:
        for i in range(len(w)):
            for j in range(i + 1, len(w) + 1):
                substrings.add(w[i:j])
    sub_merges = [(a, b) for a, b in merges if a + b in substrings]
    need = set(specials)
    for w in words:
        need.update(c for c in w if c in vocab)
    for a, b in sub_merges:
        need.update((a, b, a + b))
    sub_vocab = {t: vocab[t] for t in need}
    return sub_vocab, sub_merges


def pretokenizer_cases(texts):
    kinds = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "gpt2-prefix": pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
        "llama3": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        "qwen2": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")),
                                                              behavior="isolated", invert=False),
                                          pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
    }
    return [{"text": t, **{k: [w for w, _ in p.pre_tokenize_str(t)] for k, p in kinds.items()}} for t in texts]


def main():
    fixtures = "--fixtures" in sys.argv
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(1234)

    # --- WordPiece: all-MiniLM-L6-v2 ---
    wp = minilm()
    vocab_txt = open(os.path.join(MINILM, "vocab.txt"), encoding="utf-8").read().split("\n")
    if vocab_txt[-1] == "":
        vocab_txt.pop()
    assert {t: i for i, t in enumerate(vocab_txt)} == wp.get_vocab(with_added_tokens=False), "vocab.txt differs"
    sst2 = tsv_texts(os.path.join(DATA, "text", "sst2", "test.tsv"), header=True)
    agnews = tsv_texts(os.path.join(DATA, "text", "agnews", "test.tsv"), header=False)
    write_set("sst2", wp, sst2, pairs=64)
    write_set("agnews", wp, agnews, pairs=64)
    write_set("unicode-wordpiece", wp, UNICODE_TEXTS, pairs=16)

    # --- BPE: SmolLM2 from the GGUF arrays ---
    tokens, merges_s, types, pre = gguf_arrays()
    assert pre == "smollm", pre
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in merges_s]
    specials = [tokens[i] for i, ty in enumerate(types) if ty == 3]
    bpe = smollm_tokenizer(vocab, merges, specials)
    shakespeare = open(os.path.join(DATA, "text", "tinyshakespeare.txt"), encoding="utf-8").read().split("\n")[:1000]
    write_set("shakespeare", bpe, shakespeare)
    write_set("shakespeare-chunks", bpe, ["\n".join(shakespeare[i:i + 10]) for i in range(0, 1000, 10)])
    write_set("unicode-bpe", bpe, UNICODE_TEXTS)

    # tokenizer.json variants of the same vocabulary, for the JSON loader: SmolLM2's own layout,
    # GPT-2's (ByteLevel with a prefix space) with a template, Llama 3's (Split + ByteLevel, ignore_merges, NFC),
    # Qwen 2's (Split with single digits + ByteLevel, NFC).
    variant_texts = UNICODE_TEXTS + ["\n".join(shakespeare[i:i + 10]) for i in range(0, 300, 10)]
    bpe.save(os.path.join(OUT, "bpe-smollm.tokenizer.json"))
    write_set("bpe-smollm", bpe, variant_texts)
    from tokenizers import normalizers, processors
    gpt2 = smollm_tokenizer(vocab, merges, specials)
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    gpt2.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A <|im_end|>", pair="<|im_start|> $A <|im_end|> $B:1 <|im_end|>:1",
        special_tokens=[("<|im_start|>", 1), ("<|im_end|>", 2)])
    gpt2.save(os.path.join(OUT, "bpe-gpt2.tokenizer.json"))
    write_set("bpe-gpt2", gpt2, variant_texts)
    llama = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, ignore_merges=True))
    llama.normalizer = normalizers.NFC()
    llama.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    llama.decoder = decoders.ByteLevel()
    llama.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    llama.save(os.path.join(OUT, "bpe-llama3.tokenizer.json"))
    write_set("bpe-llama3", llama, variant_texts)
    qwen = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None))
    qwen.normalizer = normalizers.NFC()
    qwen.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    qwen.decoder = decoders.ByteLevel()
    qwen.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    qwen.save(os.path.join(OUT, "bpe-qwen2.tokenizer.json"))
    write_set("bpe-qwen2", qwen, variant_texts)

    if not fixtures:
        return
    os.makedirs(FIXTURES, exist_ok=True)
    with open(os.path.join(FIXTURES, "minilm-vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab_txt) + "\n")

    cases = UNICODE_TEXTS + pick_wordpiece_cases(wp, sst2, rng) + pick_wordpiece_cases(wp, agnews, rng)
    ids = ids_of(wp, cases)
    pair_texts = cases[:40]
    wp.enable_padding()  # BatchLongest
    batch = wp.encode_batch(cases[40:46])
    wp.no_padding()
    write_json(os.path.join(FIXTURES, "wordpiece-cases.json"), {
        "source": "all-MiniLM-L6-v2 tokenizer.json, Hugging Face tokenizers",
        "texts": cases, "ids": ids, "decoded": decoded_of(wp, ids),
        "pairs": {"texts": pair_texts, "max_length": 24, "encodings": encode_pairs(wp, pair_texts, 24)},
        "batch_longest": {"texts": cases[40:46], "encodings": [
            {"ids": e.ids, "type_ids": e.type_ids, "attention_mask": e.attention_mask} for e in batch]},
    })

    lines = [l for l in shakespeare if l][:90] + UNICODE_TEXTS
    chunk = "\n".join(shakespeare[:12])
    lines.append(chunk)
    sub_vocab, sub_merges = bpe_subset(bpe, vocab, merges, specials, lines)
    ref = ids_of(bpe, lines)
    check = smollm_tokenizer(sub_vocab, sub_merges, specials)
    assert ids_of(check, lines) == ref, "the vocabulary subset does not reproduce the reference"
    write_json(os.path.join(FIXTURES, "bpe-cases.json"), {
        "source": "SmolLM2-135M-Instruct GGUF vocabulary, Hugging Face tokenizers (Digits + ByteLevel + BPE)",
        "vocab": sorted(sub_vocab.items(), key=lambda kv: kv[1]), "merges": [a + " " + b for a, b in sub_merges],
        "specials": specials, "texts": lines, "ids": ref, "decoded": decoded_of(bpe, ref),
    })
    print("bpe subset: %d tokens, %d merges" % (len(sub_vocab), len(sub_merges)))
    write_json(os.path.join(FIXTURES, "pretokenizer-cases.json"), pretokenizer_cases(UNICODE_TEXTS + lines[:20]))
    for name in sorted(os.listdir(FIXTURES)):
        print("%8d %s" % (os.path.getsize(os.path.join(FIXTURES, name)), name))


if __name__ == "__main__":
    main()
