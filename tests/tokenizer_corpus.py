"""A deterministic, varied test corpus for tokenizer parity (`corpus()`, over 1 MB of UTF-8).

Each document is one kind of text, chosen for what tends to break tokenizers: contractions
in odd cases, whitespace runs at every position, digits of many scripts, multi-byte
characters whose bytes straddle tokens, emoji sequences joined by ZWJ, combining marks and
control characters.
"""

from __future__ import annotations

import random
from collections.abc import Callable

_WORD_TEXT = (
    "the of and to in is was he for it with as his on be at by had are but from or have an "
    "they which one you were her all she there would their we him been has when who will more "
    "no if out so said what up its about into than them can only other new some could time "
    "these two may then do first any my now such like our over man me even most made after "
    "also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three "
    "tokenizer model Python London Mary Shakespeare NASA GPT iPhone McDonald O'Brien naïve "
    "café résumé coöperate Zürich São Paulo Ærøskøbing façade jalapeño déjà-vu Straße "
    "encyclopædia"
)
WORDS = _WORD_TEXT.split()

_CONTRACTION_TEXT = (
    "'s 'S 't 'T 're 'RE 'Re 've 'VE 'Ve 'm 'M 'll 'LL 'Ll 'lL 'd 'D ’s ’ll ’re ' '' ''' 'x "
    "'sx 'lly 'ss"
)
CONTRACTIONS = _CONTRACTION_TEXT.split()

PUNCTUATION = list(".,;:!?") + ["...", " -", " —", " (", ")", ' "', '"', " '", "'", " «", "»"]

CODE_SNIPPETS = (
    "def encode(self, text: str) -> list[int]:\n    return [self.ranks[b] for b in text]\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\t// dot\n}\n",
    '{"name": "gpt2", "n_layer": 12, "dropout": 0.1, "tags": ["a", "b"]}\n',
    "<div class=\"row\">\r\n  <span id='x'>&amp;&lt;&gt;</span>\r\n</div>\r\n",
    "SELECT id, COUNT(*) FROM t WHERE x >= 10 AND y != 'z' GROUP BY id;\n",
    "    if x:  \n        y = x ** 2 // 3 % 7  # trailing   \n    else:\n\t\tpass\n",
    "fn main() -> Result<(), Box<dyn Error>> { let v: Vec<u8> = vec![0; 16]; Ok(()) }\n",
    "$ ls -la ~/.config | grep -E '^d' && echo \"ok\" >> /tmp/log 2>&1\n",
    "x=[1,2,3];y={'a':1};z=lambda q:q+1;print(f\"{x!r:>10}\")\n",
    "#include <vector>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n/* block\n * comment */\n",
)

NUMBER_FORMS: tuple[Callable[[random.Random], str], ...] = (
    lambda r: str(r.randrange(10 ** r.randrange(1, 20))),
    lambda r: f"{r.uniform(-1e6, 1e6):.{r.randrange(0, 9)}f}",
    lambda r: f"{r.randrange(10**9):,}",
    lambda r: f"{r.randrange(1900, 2100)}-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d}",
    lambda r: (
        f"{r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}.{r.randrange(1000)}"
    ),
    lambda r: f"+1 ({r.randrange(100, 999)}) {r.randrange(100, 999)}-{r.randrange(1000, 9999)}",
    lambda r: f"0x{r.randrange(16**8):08X}",
    lambda r: f"{r.uniform(0, 10):.3e}",
    lambda r: f"v{r.randrange(10)}.{r.randrange(30)}.{r.randrange(100)}-rc{r.randrange(5)}",
    lambda r: r.choice(["٣٤٥", "१२३", "７８９", "²³", "Ⅻ", "½", "⅞", "①②", "๓๔", "𝟙𝟚"]),
    lambda r: f"{r.randrange(100)}%",
    lambda r: f"${r.randrange(10**6)}.{r.randrange(100):02d}",
)

WHITESPACE = (
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n",
    "\t\n",
    "\u00a0",
    "\u3000",
    "\u2009",
    "\u2003",
    "\v",
    "\f",
    " \t ",
    "\u2028",
    "\u0085",
)

EMOJI = (
    "😀",
    "👍",
    "👍🏻",
    "👍🏿",
    "👋🏽",
    "🧑‍💻",
    "👩🏽‍💻",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🏴‍☠️",
    "🧑🏿‍🤝‍🧑🏻",
    "❤️",
    "❤️‍🔥",
    "1️⃣",
    "#️⃣",
    "🇯🇵",
    "🇺🇸🇬🇧",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "🙇‍♀️",
    "💁🏼‍♂️",
    "🤌",
    "🫠",
    "☕",
    "✈️",
    "©️",
    "™",
    "🐍",
    "🚀✨",
    "👁️‍🗨️",
)

CONTROL = tuple(
    chr(c)
    for c in (
        *range(0x00, 0x09),
        0x0B,
        0x0E,
        0x1B,
        0x1C,
        0x1F,
        0x7F,
        0x80,
        0x9F,
        0xAD,
        0x200B,
        0x200C,
        0x200D,
        0x200E,
        0x2060,
        0xFEFF,
        0xFFFD,
        0xE000,
        0xF8FF,
    )
)

SCRIPTS = (
    "Привет, мир! Как дела? Ёлка, щука, объём.",
    "Γειά σου Κόσμε· ἀρχὴ ἥμισυ παντός.",
    "مرحبا بالعالم، كَتَبَ الطَّالِبُ الدَّرْسَ.",
    "שָׁלוֹם עוֹלָם, מה שלומך?",
    "नमस्ते दुनिया, क्षत्रिय श्रृंखला।",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง",
    "안녕하세요 세계, 한국어 각 조합.",
    "Xin chào thế giới, Tiếng Việt có dấu.",
    "ᚠᚢᚦᚨᚱᚲ ᛏᛁᚹᚨᛉ",
    "Ελληνικά και English και 中文 mixed.",
)

JAPANESE_FIXED = "東京は日本の首都です。カタカナとひらがな、漢字を混ぜて書きます。ー々〆ヶ"


def _chars(rng: random.Random, low: int, high: int, count: int) -> str:
    return "".join(chr(rng.randrange(low, high)) for _ in range(count))


def prose(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randrange(3, 12)):
        words = []
        for position in range(rng.randrange(4, 20)):
            word = rng.choice(WORDS)
            if position == 0 or rng.random() < 0.05:
                word = word.capitalize()
            if rng.random() < 0.03:
                word = word.upper()
            if rng.random() < 0.12:
                word += rng.choice(CONTRACTIONS)
            if rng.random() < 0.08:
                word += rng.choice(PUNCTUATION)
            words.append(word)
        sentences.append(" ".join(words) + rng.choice([".", "!", "?", "...", "?!", '."']))
    ending = rng.choice(["\n\n", "\n", " \n", "  ", "\t\n", "", "\n\n\n"])
    return " ".join(sentences) + ending


def code(rng: random.Random) -> str:
    return "".join(rng.choice(CODE_SNIPPETS) for _ in range(rng.randrange(1, 6)))


def numbers(rng: random.Random) -> str:
    parts = [rng.choice(NUMBER_FORMS)(rng) for _ in range(rng.randrange(5, 30))]
    return rng.choice([" ", ", ", "\n", "\t", " | ", ""]).join(parts)


def whitespace(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randrange(2, 12)):
        run = "".join(rng.choice(WHITESPACE) for _ in range(rng.randrange(1, 6)))
        if rng.random() < 0.3:
            run = rng.choice([" ", "\t", "\n"]) * rng.randrange(8, 300)
        out.append(run)
        out.append(rng.choice(WORDS + ["", "", "x", "1", "!", "中"]))
    return "".join(out)


def chinese(rng: random.Random) -> str:
    sentences = [_chars(rng, 0x4E00, 0x9FA6, rng.randrange(3, 30)) for _ in range(3)]
    return "".join(s + rng.choice("。，、！？；：「」") for s in sentences) + rng.choice(["\n", ""])


def japanese(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randrange(4, 12)):
        pieces.append(
            rng.choice(
                [
                    _chars(rng, 0x3041, 0x3097, rng.randrange(1, 8)),  # hiragana
                    _chars(rng, 0x30A1, 0x30FB, rng.randrange(1, 8)),  # katakana
                    _chars(rng, 0x4E00, 0x9FA6, rng.randrange(1, 4)),  # kanji
                    JAPANESE_FIXED[rng.randrange(len(JAPANESE_FIXED)) :][:10],
                    rng.choice(["、", "。", "「", "」", "ー", "・", " ", "ABC", "123"]),
                ]
            )
        )
    return "".join(pieces)


def emoji(rng: random.Random) -> str:
    joiners = [" ", "", "", " and ", "\n", "!"]
    return "".join(rng.choice(EMOJI) + rng.choice(joiners) for _ in range(rng.randrange(3, 15)))


def combining(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randrange(3, 12)):
        word = rng.choice(WORDS)
        marks = "".join(chr(rng.randrange(0x0300, 0x0370)) for _ in range(rng.randrange(1, 4)))
        cut = rng.randrange(len(word) + 1)
        words.append(word[:cut] + marks + word[cut:])
    return " ".join(words) + rng.choice(SCRIPTS)


def controls(rng: random.Random) -> str:
    return "".join(
        rng.choice(CONTROL) + rng.choice(["", " ", "a", rng.choice(WORDS), "\n"])
        for _ in range(rng.randrange(3, 20))
    )


KINDS: dict[str, tuple[Callable[[random.Random], str], float]] = {
    "prose": (prose, 0.35),
    "code": (code, 0.12),
    "numbers": (numbers, 0.08),
    "whitespace": (whitespace, 0.08),
    "chinese": (chinese, 0.07),
    "japanese": (japanese, 0.07),
    "emoji": (emoji, 0.07),
    "combining": (combining, 0.08),
    "controls": (controls, 0.08),
}


def corpus(min_bytes: int = 1_100_000, seed: int = 20240601) -> list[tuple[str, str]]:
    """(kind, document) pairs, at least `min_bytes` of UTF-8 in all, the same on every run."""
    rng = random.Random(seed)
    names = list(KINDS)
    weights = [KINDS[name][1] for name in names]
    documents = [("empty", "")]
    total = 0
    while total < min_bytes:
        kind = rng.choices(names, weights)[0]
        text = KINDS[kind][0](rng)
        documents.append((kind, text))
        total += len(text.encode("utf-8"))
    return documents
