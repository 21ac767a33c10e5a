/// Character classes used by the tokenizers, defined as the Hugging Face `tokenizers` library
/// defines them, so that splitting and normalisation give the same tokens. That library mixes
/// Unicode versions: Rust std (`is_whitespace`, `is_numeric`, lower-casing) is current, its
/// Oniguruma regex tables (`\p{L}`, `\p{N}`) are Unicode 16, and the `unicode_categories` and
/// `unicode-normalization-alignments` crates behind BERT's control, punctuation and accent
/// classes are Unicode 8. Swift's tables are newer, so the old classes are the current category
/// restricted to characters assigned by then (`properties.age`), plus the few whose category has
/// changed since. `scripts/unicode_classes.py` dumps the reference class of every scalar and
/// `compare_tokenizers.sh` checks this file against it.
enum TokenizerCharClass {
    /// True if `c` was assigned in Unicode `major`.`minor` or earlier.
    @inline(__always)
    static func assigned(_ c: Unicode.Scalar, by major: Int, _ minor: Int) -> Bool {
        guard let age = c.properties.age else { return false }
        return age.major < major || (age.major == major && age.minor <= minor)
    }

    // MARK: ASCII fast paths

    /// Bit flags for the 128 ASCII scalars, packed in constants (a static array would cost a
    /// lazy-initialisation check and a bounds check on every character).
    static let letter: UInt8 = 1, number: UInt8 = 2, space: UInt8 = 4, bertPunct: UInt8 = 8, control: UInt8 = 16

    @inline(__always)
    static func asciiFlags(_ v: UInt32) -> UInt8 {
        if v >= 97 && v <= 122 { return letter }
        if v >= 65 && v <= 90 { return letter }
        if v >= 48 && v <= 57 { return number }
        if v == 32 { return space }
        if v >= 9 && v <= 13 { return space | control }
        if v < 32 || v == 127 { return control }
        return bertPunct // every other printable ASCII character is punctuation or a symbol
    }

    // MARK: Regex classes (Oniguruma \p{L}, \p{N}, \s) and Rust `char::is_numeric`

    /// `\p{L}`: general category L (Lu, Ll, Lt, Lm, Lo).
    @inline(__always)
    static func isLetter(_ c: Unicode.Scalar) -> Bool {
        if c.value < 128 { return asciiFlags(c.value) & letter != 0 }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return assigned(c, by: 16, 0)
        default:
            return false
        }
    }

    /// `\p{N}`: general category N (Nd, Nl, No) in Unicode 16.
    @inline(__always)
    static func isNumber(_ c: Unicode.Scalar) -> Bool {
        if c.value < 128 { return asciiFlags(c.value) & number != 0 }
        return isCategoryN(c) && assigned(c, by: 16, 0)
    }

    @inline(__always)
    static func isCategoryN(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber:
            return true
        default:
            return false
        }
    }

    /// `\s` and Rust's `char::is_whitespace`: the Unicode White_Space property.
    @inline(__always)
    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        if c.value < 128 { return asciiFlags(c.value) & space != 0 }
        return c.properties.isWhitespace
    }

    /// Rust's `char::is_numeric` (the `Digits` pre-tokenizer): general category N, current Unicode.
    @inline(__always)
    static func isNumeric(_ c: Unicode.Scalar) -> Bool {
        if c.value < 128 { return asciiFlags(c.value) & number != 0 }
        return isCategoryN(c)
    }

    // MARK: BERT (BertNormalizer, BertPreTokenizer)

    /// Removed by `clean_text`: NUL, U+FFFD and "control" characters (Cc, Cf, Co) except tab, LF, CR.
    @inline(__always)
    static func isBertRemoved(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if v < 128 { return v != 9 && v != 10 && v != 13 && asciiFlags(v) & control != 0 }
        if v == 0xFFFD { return true }
        switch c.properties.generalCategory {
        case .control, .format, .privateUse:
            return assigned(c, by: 8, 0)
        default:
            return false
        }
    }

    /// Turned into a space by `clean_text` and used to split words by the BERT pre-tokenizer.
    @inline(__always)
    static func isBertWhitespace(_ c: Unicode.Scalar) -> Bool { isSpace(c) }

    /// Split off as a word of its own by the BERT pre-tokenizer: ASCII punctuation and symbols,
    /// and Unicode punctuation (Pc, Pd, Ps, Pe, Pi, Pf, Po).
    @inline(__always)
    static func isBertPunctuation(_ c: Unicode.Scalar) -> Bool {
        if c.value < 128 { return asciiFlags(c.value) & bertPunct != 0 }
        switch c.value {
        case 0x166D, 0x111C9: return true // Po in Unicode 8, now So and Mn
        default: break
        }
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return assigned(c, by: 8, 0)
        default:
            return false
        }
    }

    /// CJK ideographs that `handle_chinese_chars` surrounds with spaces.
    @inline(__always)
    static func isChineseChar(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }

    /// Dropped by accent stripping after NFD: non-spacing marks (Mn) of Unicode 8.
    @inline(__always)
    static func isMark(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x300 { return false }
        switch c.value {
        case 0x1734, 0x1171E: return true                  // Mn in Unicode 8, now Mc
        case 0x1885, 0x1886, 0xA9BD, 0x111C9: return false // not Mn in Unicode 8
        default: break
        }
        return c.properties.generalCategory == .nonspacingMark && assigned(c, by: 8, 0)
    }

    /// Characters whose canonical decomposition came after the reference library's NFD tables
    /// (so its NFD leaves them whole).
    @inline(__always)
    static func hasNewDecomposition(_ c: Unicode.Scalar) -> Bool {
        c.value == 0x11938
    }
}

/// Checks of the tokenizers against their reference implementation.
public enum TokenizerDiagnostics {
    /// How the tokenizers classify every Unicode scalar, in the format of scripts/unicode_classes.py
    /// (which writes the same table from Hugging Face `tokenizers`): one line per scalar that is not
    /// plain, `HEX<TAB>clean<TAB>cjk<TAB>strip<TAB>lower<TAB>bert<TAB>classes`, where clean, strip and
    /// lower are what the BERT normaliser steps make of the scalar (hex scalars, "-" unchanged,
    /// "" removed), cjk is 1 for ideographs spaced out, bert is w/p/o (whitespace, punctuation,
    /// other) and classes lists L, N, S (regex \p{L}, \p{N}, \s) and D (numeric for `Digits`).
    /// `frugal tokenize --unicode-classes FILE` writes it; compare_tokenizers.sh diffs the two.
    public static func unicodeClassTable() -> String {
        func hex(_ s: [Unicode.Scalar], _ c: Unicode.Scalar) -> String {
            if s == [c] { return "-" }
            return s.map { String($0.value, radix: 16, uppercase: true) }.joined(separator: " ")
        }
        let clean = BertNormalizerOptions(cleanText: true, handleChineseChars: false, stripAccents: false, lowercase: false)
        let strip = BertNormalizerOptions(cleanText: false, handleChineseChars: false, stripAccents: true, lowercase: false)
        let lower = BertNormalizerOptions(cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: true)
        var out = ""
        for v in UInt32(0)..<0x110000 {
            guard let c = Unicode.Scalar(v) else { continue }
            var classes = ""
            if TokenizerCharClass.isLetter(c) { classes += "L" }
            if TokenizerCharClass.isNumber(c) { classes += "N" }
            if TokenizerCharClass.isSpace(c) { classes += "S" }
            if TokenizerCharClass.isNumeric(c) { classes += "D" }
            let row = [hex(clean.normalize([c], 0..<1), c), TokenizerCharClass.isChineseChar(c) ? "1" : "0",
                       hex(strip.normalize([c], 0..<1), c), hex(lower.normalize([c], 0..<1), c),
                       TokenizerCharClass.isBertWhitespace(c) ? "w" : TokenizerCharClass.isBertPunctuation(c) ? "p" : "o", classes]
            if row != ["-", "0", "-", "-", "o", ""] {
                out += String(v, radix: 16, uppercase: true) + "\t" + row.joined(separator: "\t") + "\n"
            }
        }
        return out
    }
}
