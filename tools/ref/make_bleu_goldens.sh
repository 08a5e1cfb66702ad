#!/bin/sh
# make_bleu_goldens.sh - writes tests/data/bleu/: the BLEU goldens
# (goldens.json) that tests/test_bleu.c checks eval/bleu.c and eval/mtdata.c
# against, and the small .sgm/.xml files of the extractor's tests.
#
# Everything expected comes from tools/ref/bleu_ref.py (an independent
# Python transcription of sacreBLEU 2.x), except the cases copied from
# sacreBLEU's own test suite, which carry their published values and the
# file they come from. The corpora are the first 200 WMT14 newstest2014
# English reference segments and the first 100 IWSLT17 tst2017 segments of
# each side, from ../shared/data (SHARED overrides), with deterministic
# perturbations (random.Random(20240611)) as "systems".
#
# Where python3-nltk is installed, bleu_ref.py is also compared with
# nltk.translate.bleu_score.corpus_bleu on the same tokens without smoothing
# for every case where the two definitions coincide (no zero n-gram count);
# the agreement is printed and stored in goldens.json ("nltk_check").
#
# Run from the repository root with Debian's python3:  sh tools/ref/make_bleu_goldens.sh
set -eu
SHARED=${SHARED:-../shared}
OUT=tests/data/bleu
mkdir -p "$OUT"
PYTHONPATH=tools/ref /usr/bin/python3 - "$SHARED/data" "$OUT" <<'PY'
import json, math, os, random, sys
import bleu_ref as B

data, out = sys.argv[1], sys.argv[2]
rng = random.Random(20240611)

def extract(path):
    with open(path, encoding='utf-8', newline='\n') as f:
        return B.extract_segments(f.read())

wmt = extract(os.path.join(data, 'wmt14-deen/newstest2014-deen-ref.en.sgm'))
iw_en = extract(os.path.join(data, 'iwslt17-deen/IWSLT17.TED.tst2017.en-de.en.xml'))
iw_de = extract(os.path.join(data, 'iwslt17-deen/IWSLT17.TED.tst2017.de-en.de.xml'))
assert len(wmt) == 3003 and len(iw_en) == len(iw_de) == 1138
corpora = {'wmt14_en': wmt[:200], 'iwslt_en': iw_en[:100], 'iwslt_de': iw_de[:100]}
W = corpora['wmt14_en']

# ---- systems: deterministic perturbations of the reference ----
def per_line(f):
    return [f(line.split(' '), i) for i, line in enumerate(W)]

def drop(ws, i, p=0.15):
    return ' '.join(w for w in ws if rng.random() >= p)

def swap(ws, i):
    ws = list(ws)
    for _ in range(max(1, len(ws) // 6)):
        if len(ws) > 1:
            k = rng.randrange(len(ws) - 1)
            ws[k], ws[k + 1] = ws[k + 1], ws[k]
    return ' '.join(ws)

def insert_some(ws, pool, k=2):
    ws = list(ws)
    for _ in range(k):
        ws.insert(rng.randrange(len(ws) + 1), rng.choice(pool))
    return ' '.join(ws)

PUNCT = ['!', '?', '...', '"quoted"', "'single'", '(paren)', '[x]', '{y}', 'a/b', 'x;y', 'k:v', '#tag', '@user',
         '$5', '50%', 'A&B', 'a+b=c', '<tag>', 'e.g.', 'U.S.A.', 'end.', ',comma', 'x,y', '~tilde', 'back\\slash',
         'under_score', 'hat^', '`tick`', 'pipe|', '--', '-', 'well-known', "it's", '. . .', '.,', ',.']
NUMS = ['12,000', '3.5', '1.000,50', '2012-13', '1-2', '-5', '5-', '0.5%', '1,2,3', '3.14.15', '10.', '.5', ',7',
        '7,', '2-3-4', '$1,000.00', '1990s', '4-year-old', '9-', 'v1.2', '1.x', 'x.1']
UNI = ['Straße', 'naïve', 'café—bar', '„Zitat“', '«guillemets»', '日本語。', 'テスト、', '…', 'Ελλάδα', 'Москва,',
       'x\u00a0y', 'ideo\u3000graphic', 'en\u2002space', 'emoji🙂', 'ﬁ', 'e\u0301', '€10', '½', 'İstanbul',
       'ΣΟΦΟΣ', 'Ǆ', 'ß.', '١٢٣', 'zero\u200bwidth']
ENT = lambda s: s.replace('&', '&amp;').replace('"', '&quot;').replace('<', '&lt;').replace('>', '&gt;')

systems = {
    'identity': list(W),
    'drop15': per_line(drop),
    'swap': per_line(swap),
    'truncate60': per_line(lambda ws, i: ' '.join(ws[:max(1, int(len(ws) * 0.6))])),
    'empty_every7': [('' if i % 7 == 3 else line) for i, line in enumerate(W)],
    'punct': per_line(lambda ws, i: insert_some(ws, PUNCT, 3)),
    'numbers': per_line(lambda ws, i: insert_some(ws, NUMS, 3)),
    'unicode': per_line(lambda ws, i: insert_some(ws, UNI, 3)),
    'short3': per_line(lambda ws, i: ' '.join(ws[:3])),
    'shuffle': per_line(lambda ws, i: ' '.join(rng.sample(ws, len(ws)))),
    'entities': [ENT(line) for line in W],
    'lower_drop': [s.lower() for s in per_line(drop)],
    'trailing_ws': [line + rng.choice([' ', '\t', '  \u00a0', '\u3000']) for line in W],
}
ref2 = per_line(lambda ws, i: swap(drop(ws, i, 0.1).split(' '), i))
ref2_var = [('' if i % 5 == 0 else s) for i, s in enumerate(ref2)]
corpora['wmt14_en_ref2'] = ref2
corpora['wmt14_en_ref2_var'] = ref2_var

# a system without a single 4-gram match: each line's words reversed
# (the first 40 lines where that leaves no 4-gram match; the others have a palindromic stretch)
rev, rev_ref = [], []
for line in W:
    h = ' '.join(reversed(line.split(' ')))
    if len(rev) < 40 and B.segment_stats(h, [line])[2 + 3] == 0:
        rev.append(h), rev_ref.append(line)
st = B.corpus_stats(rev, [rev_ref])
assert st[2 + 3] == 0 and st[2] > 0, st
corpora['wmt14_en_40'] = rev_ref
systems['reversed40'] = rev

cases = []

def case(name, hyps, refs, source=None, expected_published=None, tol=1e-8, **opts):
    o = dict(tokenize='13a', lowercase=False, smooth='exp', smooth_value=None, effective_order=False)
    o.update(opts)
    ref_streams = [corpora[r] if isinstance(r, str) else r for r in refs]
    r = B.corpus_bleu(hyps, ref_streams, o['tokenize'], o['lowercase'], o['smooth'], o['smooth_value'],
                      o['effective_order'])
    c = {'name': name, 'hyps': hyps, 'refs': refs, 'opts': o,
         'expected': {'score': r['score'], 'precisions': r['precisions'], 'bp': r['bp'], 'ratio': r['ratio'],
                      'hyp_len': r['sys_len'], 'ref_len': r['ref_len'], 'counts': r['counts'],
                      'totals': r['totals'], 'verbose': B.format_score(r)}}
    if source:
        c['source'] = source
    if expected_published is not None:
        c['published'] = expected_published
        c['published_tol'] = tol
        assert abs(r['score'] - expected_published) < tol, (name, r['score'], expected_published)
    cases.append(c)

for name, hyps in systems.items():
    case(name, hyps, ['wmt14_en_40' if name == 'reversed40' else 'wmt14_en'])
case('lower_drop_lowercase', systems['lower_drop'], ['wmt14_en'], lowercase=True)
case('unicode_lowercase', systems['unicode'], ['wmt14_en'], lowercase=True)
case('iwslt_de_vs_en', corpora['iwslt_de'], ['iwslt_en'])
case('iwslt_en_drop', [drop(s.split(' '), 0) for s in corpora['iwslt_en']], ['iwslt_en'])
case('multiref_drop15', systems['drop15'], ['wmt14_en', 'wmt14_en_ref2'])
case('multiref_variable', systems['swap'], ['wmt14_en', 'wmt14_en_ref2_var'])
case('multiref_ref2_first', systems['truncate60'], ['wmt14_en_ref2', 'wmt14_en'])
case('tok_none_drop15', systems['drop15'], ['wmt14_en'], tokenize='none')
case('tok_none_punct', systems['punct'], ['wmt14_en'], tokenize='none')
for sm, val in (('none', None), ('floor', None), ('floor', 0.5), ('add-k', None), ('add-k', 2.0)):
    for sysname, ref in (('reversed40', 'wmt14_en_40'), ('shuffle', 'wmt14_en')):
        case(f'{sysname}_smooth_{sm}' + ('' if val is None else f'_{val}'), systems[sysname], [ref],
             smooth=sm, smooth_value=val)
case('reversed40_effective_order', systems['reversed40'], ['wmt14_en_40'], effective_order=True)

# edge cases
case('all_empty_hyps', ['', '', ''], [['a b c d e', 'f g h i', 'j k']])
case('short_no_4grams', ['Hello world', 'Yes .'], [['Hello world', 'Yes .']])
case('closest_ref_tie_shorter', ['a b c d e'], [['a b c d'], ['a b c d e f']])
case('closest_ref_nearest', ['a b c d e f g'], [['a b c'], ['a b c d e f g h'], ['a b']])
case('clip_by_max_ref_count', ['the the the the the the the'], [['the cat is on the mat'], ['there is a cat on the mat']])
case('clip_multi_ref_max', ['the the the cat'], [['the cat the'], ['the the the the']])
case('unicode_whitespace_tokens', ['a\u00a0b\tc\u3000d\x1ce\u2009f', 'x\u200by z'],
     [['a b c d e f', 'x\u200by z']])
case('lowercase_special', ['İSTANBUL ΟΔΟΣ STRASSE Ǆ', 'ΣΑΣ'], [['i̇stanbul οδος strasse ǆ', 'σας']], lowercase=True)
case('entities_13a', ['&quot;A&quot; &amp; &lt;b&gt; &apos;c&apos; &amp;quot;'], [['"A" & <b> \'c\' &quot;']])
case('skipped_and_hyphen_newline', ['foo <skipped> bar-\nbaz qux\nquux end'], [['foo bar baz qux quux end']])

# sacreBLEU's published test cases (score to 1e-8 as its tests assert)
SRC = 'mjpost/sacrebleu test/test_bleu.py @ 785d26bb42ff5cc738c8aa06efb288cf407fc4fd'
_refs = [['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
         ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.']]
_hyps = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.']
case('sacrebleu_corpus_default', _hyps, _refs, SRC, 48.530827)
case('sacrebleu_corpus_empty_hyps', ['', '', ''], _refs, SRC, 0.0)
case('sacrebleu_corpus_tok_none', _hyps, _refs, SRC, 49.1919566, tokenize='none')
case('sacrebleu_corpus_smooth_none', _hyps, _refs, SRC, 48.530827, smooth='none')
raw = dict(tokenize='none', smooth='floor', smooth_value=0.01, effective_order=True)  # raw_corpus_bleu
for i, (h, r, e) in enumerate([(['this is a test', 'another test'], [['ref1', 'ref2']], 0.0),
                               (['this is a test'], [['this is a test']], 1.0),
                               (['this is a fest'], [['this is a test']], 0.223606797749979),
                               (['test'], [['a test']], 0.3678794411714425),
                               (['a test'], [['a test']], 1.0),
                               (['a little test'], [['a test']], 0.03218297948685433)]):
    case(f'sacrebleu_raw_{i}', h, r, SRC, e * 100, **raw)
case('sacrebleu_statistics_offset_0', ['am I am a character sequence'], [['I am a symbol string sequence a a']],
     SRC, 0.0, **dict(raw, smooth_value=0.0))
case('sacrebleu_offset_default', ['am I am a character sequence'], [['I am a symbol string sequence a a']],
     SRC, 15.55722182, 1e-6, **dict(raw, smooth_value=None))  # published to 10 digits of the 0..1 score
assert cases[-2]['expected']['counts'] == [4, 2, 1, 0] and cases[-2]['expected']['totals'] == [6, 5, 4, 3]

stats_cases = []
def stats_case(name, correct, total, sys_len, ref_len, smooth, smooth_value, published):
    r = B.compute_bleu(correct, total, sys_len, ref_len, smooth, smooth_value)
    assert abs(r['score'] / 100 - published) < 1e-8, (name, r['score'], published)
    stats_cases.append({'name': name, 'correct': correct, 'total': total, 'sys_len': sys_len, 'ref_len': ref_len,
                        'smooth': smooth, 'smooth_value': smooth_value, 'score': r['score'],
                        'published': published * 100, 'published_tol': 1e-6, 'source': SRC})
stats_case('scoring', [9, 7, 5, 3], [10, 8, 6, 4], 11, 11, 'none', None, 0.8375922397)
for i, (c, t, s, rl, off) in enumerate([([0, 0, 0, 0], [4, 4, 2, 1], 0, 1, 0.0),
                                        ([0, 0, 0, 0], [10, 11, 12, 0], 14, 10, 0.0),
                                        ([0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.0),
                                        ([6, 5, 4, 0], [6, 5, 4, 3], 6, 6, 0.0),
                                        ([0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.1),
                                        ([0, 0, 0, 0], [0, 0, 0, 0], 1, 5, 0.01)]):
    stats_case(f'degenerate_{i}', c, t, s, rl, 'floor', off, 0.0)

# ---- the 13a tokenizer on tricky strings ----
TRICKY = ['Hello, world!', '3.14 and 3,000 and 1.000,50', 'end.', 'e.g. U.S.A. etc.', 'a-b 1-2 x- -y 5- -5 2012-13',
          '<skipped>ok<skipped>', '<sk<skipped>ipped>', 'line-\nbreak', 'a\nb', 'a-\n', '&quot;q&quot; &amp;amp; &lt;tag&gt; &apos;x&apos;',
          '&amp;quot;', '&quot', "It's don't rock'n'roll", '$5.00 50% #1 @me', '(parens) [brackets] {braces}',
          '~`^_|\\', '!"#$%&()*+/:;<=>?@', '..', 'a..b', '...', ',,', '1.,2', 'a.,b', '.a', 'a.', '.5', '5.', 'x.5',
          '5.x', '1,a', 'a,1', '1-', '-1', '--', 'a--b', '9--8', 'naïve café — “quoted” … ‚low‘',
          'Straße, Größe.', '日本語、テスト。漢字.', 'Ελλάδα, Αθήνα.', 'Москва, Россия.', 'NBSP\u00a0here, and\u00a0.',
          '\u3000ideographic\u3000space\u3000', 'tab\tsep\tx', 'info\x1csep\x1fx', 'nel\x85x', 'thin\u2009space',
          'zero\u200bwidth', 'vt\x0bff\x0cx', 'cr\rx\r', 'trailing   ', '  leading', '', ' ', '\t\u00a0',
          'İSTANBUL ΟΔΟΣ ΣΑΣ ǄUNGLA ẞ Ω K', 'emoji 🙂, ok.', 'e\u0301.', '€1.000,-', 'word.', 'A.B.C', 'a,b,c', '1.2.3',
          'x/y/z', 'hyphen-ated-word', '3-4-5', 'x-1', "'quoted'", '"double"', '`back`', '«a»', '1990s-era', '5,-',
          '.,;:', 'a.\u00a0b', '\u00a0.5']
tok = []
for t in TRICKY:
    tok.append({'text': t, '13a': B.preprocess(t, '13a'), '13a_lc': B.preprocess(t, '13a', True),
                'none': B.preprocess(t, 'none'), 'none_lc': B.preprocess(t, 'none', True)})

# ---- extractor snippets ----
files = {}
files['ok.sgm'] = (
    '<refset trglang="en" setid="test" srclang="any">\n'
    '<doc sysid="ref" docid="d1" genre="news" origlang="de">\n'
    '<seg id="1">Standard & Poor\'s &amp; Co. &lt;tag&gt; &quot;q&quot; &apos;a&apos;</seg>\n'
    '<seg id="2">  spaces\tand\u00a0nbsp   inside  </seg>\n'
    '<seg id="3">a > b and c < d</seg>  \n'
    '<seg id="4">&#38; &#x41;&#X42; &#233;&#x1F642; &nbsp; &bogus; &#; &#x;</seg>\r\n'
    '<seg id="5"></seg>\n'
    '</doc>\n'
    '<doc sysid="ref" docid="d2" genre="news" origlang="en">\n'
    '<seg id="1">Ünïcödé — “text” … 日本語</seg>\n'
    '<seg id="2">&amp;amp; double &amp;lt;</seg>\n'
    '</doc>\n'
    '</refset>\n')
files['ok.xml'] = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<mteval>\n<srcset setid="iwslt2017-tst2017" srclang="english">\n'
    '<doc docid="2507" genre="lectures">\n<url>http://example.com/talk</url> \n'
    '<description>TED Talk: a &amp; b, with <seg-like> text</description> \n<keywords>talks</keywords> \n'
    '<talkid>2507</talkid> \n<title>Title: x</title> \n<reviewer></reviewer> \n<translator></translator> \n'
    '<seg id="1"> So this is James Risen.    </seg>\n'
    '<seg id="2"> You may know him  as the reporter  for The Times.    </seg>\n'
    '<seg id="3"> Tom &amp; Jerry said &quot;hi&quot;.    </seg>\n'
    '</doc>\n<doc docid="2478" genre="lectures">\n'
    '<seg id="1"> Thank you.    </seg>\n'
    '<seg id="2"> (Applause)    </seg>\n'
    '</doc>\n</srcset>\n</mteval>\n')
bad = [  # file, text, line of the error, words the message must contain
    ('bad_unterminated.sgm', '<refset>\n<doc docid="a">\n<seg id="1">fine</seg>\n<seg id="2">no end\n</doc>\n', 4, '</seg>'),
    ('bad_noseg.xml', '<?xml version="1.0"?>\n<mteval>\n<doc docid="a">\n</doc>\n</mteval>\n', 0, 'no segments'),
    ('bad_empty.sgm', '', 0, 'no segments'),
    ('bad_two_segs.sgm', '<doc docid="a">\n<seg id="1">a</seg><seg id="2">b</seg>\n</doc>\n', 2, 'more than one'),
    ('bad_trailing.sgm', '<doc docid="a">\n<seg id="1">a</seg> tail\n</doc>\n', 2, 'after </seg>'),
    ('bad_indented.xml', '<doc docid="a">\n<seg id="1">a</seg>\n  <seg id="2">b</seg>\n</doc>\n', 3, 'begin its line'),
    ('bad_outside_doc.sgm', '<refset>\n<seg id="1">a</seg>\n</refset>\n', 2, 'outside'),
    ('bad_unclosed_doc.xml', '<mteval>\n<doc docid="a">\n<seg id="1">a</seg>\n</mteval>\n', 2, 'not closed'),
    ('bad_nested_doc.sgm', '<doc docid="a">\n<seg id="1">a</seg>\n<doc docid="b">\n</doc>\n', 3, 'inside'),
    ('bad_utf8.sgm', '<doc docid="a">\n<seg id="1">a</seg>\n<seg id="2">\udcff</seg>\n</doc>\n', 3, 'UTF-8'),
    ('bad_nul.sgm', '<doc docid="a">\n<seg id="1">a\x00b</seg>\n</doc>\n', 2, 'NUL'),
]
bad_unescape = [('bad_charref.sgm', '<doc docid="a">\n<seg id="1">ok</seg>\n<seg id="2">&#xD800;</seg>\n</doc>\n', 3,
                 'not a Unicode character'),
                ('bad_charref0.sgm', '<doc docid="a">\n<seg id="1">&#0;</seg>\n</doc>\n', 2, 'not a Unicode character')]
for name, text in files.items():
    with open(os.path.join(out, name), 'w', encoding='utf-8', newline='') as f:
        f.write(text)
for name, text, _, _ in bad + bad_unescape:
    with open(os.path.join(out, name), 'wb') as f:
        f.write(text.encode('utf-8', 'surrogateescape'))
extract_ok = [{'file': n, 'segments': B.extract_segments(t), 'unescaped': B.extract_segments(t, True)}
              for n, t in files.items()]
# the bad files that only fail with --unescape extract fine without it
for name, text, _, _ in bad_unescape:
    extract_ok.append({'file': name, 'segments': B.extract_segments(text)})
extract_bad = [{'file': n, 'line': l, 'message': m, 'unescape': False} for n, _, l, m in bad] + \
              [{'file': n, 'line': l, 'message': m, 'unescape': True} for n, _, l, m in bad_unescape]

# ---- cross-check with NLTK where the definitions coincide ----
nltk_check = {'available': False}
try:
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
    import nltk
    worst, n_cmp = 0.0, 0
    compared = []
    for c in cases:
        o = c['opts']
        if o['effective_order']:
            continue
        e = c['expected']
        streams = [corpora[r] if isinstance(r, str) else r for r in c['refs']]
        # NLTK counts a hypothesis shorter than n as 0 of 1 n-grams (max(1, ...)), sacreBLEU as 0 of 0:
        # compare on the segments of 4 tokens or more, where the two definitions coincide
        keep = [i for i, h in enumerate(c['hyps']) if len(B.preprocess(h, o['tokenize'], o['lowercase']).split()) >= 4]
        hyps = [c['hyps'][i] for i in keep]
        streams = [[s[i] for i in keep] for s in streams]
        st = B.corpus_stats(hyps, streams, o['tokenize'], o['lowercase'])
        if not keep or min(st[2:2 + 4]) == 0:
            continue
        hyp_toks = [B.preprocess(h, o['tokenize'], o['lowercase']).split() for h in hyps]
        ref_toks = [[B.preprocess(s[i], o['tokenize'], o['lowercase']).split() for s in streams if s[i] != '']
                    for i in range(len(hyps))]
        ours = B.corpus_bleu(hyps, streams, o['tokenize'], o['lowercase'], 'none')['score'] / 100
        theirs = nltk_corpus_bleu(ref_toks, hyp_toks)
        rel = abs(ours - theirs) / max(abs(theirs), 1e-300)
        if rel > 1e-12: print("nltk differs:", c["name"], ours, theirs)
        worst = max(worst, rel)
        n_cmp += 1
        compared.append(c['name'])
    nltk_check = {'available': True, 'nltk_version': nltk.__version__, 'cases_compared': n_cmp,
                  'max_rel_diff': worst, 'cases': compared}
    print(f'nltk {nltk.__version__}: {n_cmp} cases compared, max relative difference {worst:.3g}')
    assert worst < 1e-12, worst  # both are float64 sums of the same logs, in another order
except ImportError:
    print('nltk not installed: no cross-check (apt-get install python3-nltk)')

golden = {
    'about': 'BLEU goldens for tests/test_bleu.c, written by tools/ref/make_bleu_goldens.sh with '
             'tools/ref/bleu_ref.py (sacreBLEU 2.x definition). "published" values come from the file named '
             'in "source".',
    'python': sys.version.split()[0],
    'corpora': corpora, 'cases': cases, 'stats_cases': stats_cases, 'tokenize': tok,
    'extract_ok': extract_ok, 'extract_bad': extract_bad,
    'segment_counts': {'wmt14-deen/*.sgm': 3003, 'iwslt17-deen/*.xml': 1138},
    'nltk_check': nltk_check,
}
with open(os.path.join(out, 'goldens.json'), 'w', encoding='utf-8') as f:
    json.dump(golden, f, ensure_ascii=False, indent=0)
    f.write('\n')
print(f'{out}/goldens.json: {len(cases)} corpus cases, {len(stats_cases)} statistics cases, '
      f'{len(tok)} tokenizer strings, {len(extract_ok)} + {len(extract_bad)} extractor files')
PY
