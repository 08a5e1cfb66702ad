#!/usr/bin/python3
"""bleu_ref.py - an independent reference for corpus BLEU as sacreBLEU 2.x
defines its default `BLEU` metric, and for how sacreBLEU's dataset loader
extracts segments from WMT .sgm and IWSLT .xml files.

Written from sacreBLEU's definition (sacrebleu/metrics/bleu.py:
BLEU.compute_bleu, _get_closest_ref_len, _extract_reference_info,
_compute_segment_statistics; metrics/base.py: _cache_references;
tokenizers/tokenizer_13a.py and tokenizer_re.py; dataset/fake_sgml.py and
base.py: _convert_format, _clean). It shares no code with bild's C
(eval/bleu.c works on bytes with hand-written scanners; this uses Python's
str methods and `re`, as sacreBLEU itself does), and it does not import
sacrebleu (not installed here).

Usage (Debian's /usr/bin/python3; only the standard library):
    bleu_ref.py score REF [REF ...] < HYP      score line, like bild bleu
    bleu_ref.py tokenize [--lowercase] < TEXT  13a tokenization per line
    bleu_ref.py extract FILE [--unescape]      segments of a .sgm/.xml file
Importable: tokenize_13a, preprocess, segment_stats, corpus_stats,
compute_bleu, corpus_bleu, format_score, extract_segments, xml_unescape.
"""
import math
import re
import sys
from collections import Counter

MAX_ORDER = 4

# --- tokenization ------------------------------------------------------------

# TokenizerRegexp's substitutions, applied in order with re.sub
_13A_RULES = [
    (re.compile(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])'), r' \1 '),  # punctuation except ' , - . and digits
    (re.compile(r'([^0-9])([\.,])'), r'\1 \2 '),                # . , not preceded by a digit
    (re.compile(r'([\.,])([^0-9])'), r' \1 \2'),                # . , not followed by a digit
    (re.compile(r'([0-9])(-)'), r'\1 \2 '),                     # - preceded by a digit
]


def tokenize_13a(line):
    """mteval-v13a as sacreBLEU's Tokenizer13a does it."""
    for old, new in (('<skipped>', ''), ('-\n', ''), ('\n', ' '), ('&quot;', '"'),
                     ('&amp;', '&'), ('&lt;', '<'), ('&gt;', '>')):
        line = line.replace(old, new)
    line = ' ' + line + ' '
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return ' '.join(line.strip().split())


def preprocess(sent, tokenize='13a', lowercase=False):
    """BLEU._preprocess_segment: lower(), rstrip(), tokenize."""
    if lowercase:
        sent = sent.lower()
    sent = sent.rstrip()
    if tokenize == '13a':
        return tokenize_13a(sent)
    if tokenize == 'none':
        return sent
    raise ValueError(f'unknown tokenizer {tokenize!r}')


# --- statistics --------------------------------------------------------------

def ngrams(tokens, max_order=MAX_ORDER):
    c = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            c[tuple(tokens[i:i + n])] += 1
    return c


def closest_ref_len(hyp_len, ref_lens):
    """The reference length closest to hyp_len; the shorter one on a tie."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def segment_stats(hyp, refs, tokenize='13a', lowercase=False):
    """[hyp_len, ref_len, correct_1..4, total_1..4] of one segment. Empty
    ("") references are dropped; all empty is an error, as in sacreBLEU."""
    refs = [r for r in refs if r is not None and r != '']
    if not refs:
        raise ValueError('Empty or `None` reference sentence found.')
    ref_max = Counter()
    ref_lens = []
    for r in refs:
        toks = preprocess(r, tokenize, lowercase).split()
        ref_lens.append(len(toks))
        for g, c in ngrams(toks).items():
            ref_max[g] = max(ref_max[g], c)
    htoks = preprocess(hyp, tokenize, lowercase).split()
    correct = [0] * MAX_ORDER
    total = [0] * MAX_ORDER
    for g, c in ngrams(htoks).items():
        total[len(g) - 1] += c
        correct[len(g) - 1] += min(c, ref_max.get(g, 0))
    return [len(htoks), closest_ref_len(len(htoks), ref_lens)] + correct + total


def corpus_stats(hyps, ref_streams, tokenize='13a', lowercase=False):
    """Summed statistics; ref_streams is a list of reference streams."""
    for s in ref_streams:
        if len(s) != len(hyps):
            raise ValueError('System and reference streams have different lengths.')
    acc = [0] * (2 + 2 * MAX_ORDER)
    for i, h in enumerate(hyps):
        st = segment_stats(h, [s[i] for s in ref_streams], tokenize, lowercase)
        acc = [a + b for a, b in zip(acc, st)]
    return acc


SMOOTH_DEFAULTS = {'none': None, 'floor': 0.1, 'add-k': 1, 'exp': None}


def compute_bleu(correct, total, sys_len, ref_len, smooth='none', smooth_value=None, effective_order=False):
    """BLEU.compute_bleu: returns a dict with score (0..100), precisions, bp,
    ratio, counts (unsmoothed), totals, sys_len, ref_len."""
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth]
    correct, total = list(correct), list(total)
    out = {'counts': list(correct), 'totals': list(total), 'sys_len': sys_len, 'ref_len': ref_len,
           'ratio': sys_len / ref_len if ref_len else 0}
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        bp = 1.0
    out['bp'] = bp
    prec = [0.0] * MAX_ORDER
    if not any(correct):
        out.update(score=0.0, precisions=prec)
        return out
    mteval = 1.0
    eff = MAX_ORDER
    for n in range(1, MAX_ORDER + 1):
        if smooth == 'add-k' and n > 1:
            correct[n - 1] += smooth_value
            total[n - 1] += smooth_value
        if total[n - 1] == 0:
            break
        if effective_order:
            eff = n
        if correct[n - 1] == 0:
            if smooth == 'exp':
                mteval *= 2
                prec[n - 1] = 100. / (mteval * total[n - 1])
            elif smooth == 'floor':
                prec[n - 1] = 100. * smooth_value / total[n - 1]
        else:
            prec[n - 1] = 100. * correct[n - 1] / total[n - 1]
    logs = [math.log(p) if p != 0.0 else -9999999999 for p in prec[:eff]]
    out.update(score=bp * math.exp(sum(logs) / eff), precisions=prec)
    return out


def corpus_bleu(hyps, ref_streams, tokenize='13a', lowercase=False, smooth='exp', smooth_value=None,
                effective_order=False):
    st = corpus_stats(hyps, ref_streams, tokenize, lowercase)
    return compute_bleu(st[2:2 + MAX_ORDER], st[2 + MAX_ORDER:], st[0], st[1], smooth, smooth_value,
                        effective_order)


def format_score(r):
    """BLEUScore's line with width 2."""
    p = '/'.join(f'{x:.1f}' for x in r['precisions'])
    return (f"BLEU = {r['score']:.2f} {p} (BP = {r['bp']:.3f} ratio = {r['ratio']:.3f} "
            f"hyp_len = {r['sys_len']:d} ref_len = {r['ref_len']:d})")


# --- test-set files ----------------------------------------------------------

_XML_ENTITY = re.compile(r'&(amp|lt|gt|quot|apos);|&#([0-9]+);|&#[xX]([0-9a-fA-F]+);')
_NAMED = {'amp': '&', 'lt': '<', 'gt': '>', 'quot': '"', 'apos': "'"}


def xml_unescape(s):
    """The five XML entities and numeric character references; anything else stays."""
    def one(m):
        if m.group(1):
            return _NAMED[m.group(1)]
        cp = int(m.group(2), 10) if m.group(2) else int(m.group(3), 16)
        if cp == 0 or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            raise ValueError(f'character reference {m.group(0)!r} is not a Unicode character')
        return chr(cp)
    return _XML_ENTITY.sub(one, s)


def extract_segments(text, unescape=False):
    """FakeSGMLDataset._convert_format (IWSLTXMLDataset is the same class):
    lines that start with '<seg ', the regex substitution, then _clean. No
    entity decoding unless asked."""
    out = []
    for line in text.split('\n'):
        if line.startswith('<seg '):
            line = re.sub(r'<seg.*?>(.*)</seg>.*?', '\\1', line)
            if unescape:
                line = xml_unescape(line)
            out.append(re.sub(r'\s+', ' ', line.strip()))
    return out


def read_lines(path):
    """Lines as sacreBLEU's command line reads them: newline='\\n', rstrip()."""
    with open(path, encoding='utf-8', newline='\n') as f:
        return [line.rstrip() for line in f]


def main(argv):
    if len(argv) >= 2 and argv[0] == 'score':
        refs = [read_lines(p) for p in argv[1:]]
        hyps = [line.rstrip() for line in sys.stdin.read().split('\n')]
        if hyps and hyps[-1] == '':
            hyps.pop()
        print(format_score(corpus_bleu(hyps, refs)))
    elif argv and argv[0] == 'tokenize':
        lc = '--lowercase' in argv
        for line in sys.stdin.read().split('\n'):
            print(preprocess(line, '13a', lc))
    elif len(argv) >= 2 and argv[0] == 'extract':
        with open(argv[1], encoding='utf-8', newline='\n') as f:
            for s in extract_segments(f.read(), '--unescape' in argv):
                print(s)
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
