#!/usr/bin/python3
# tools/align/merge_corpus.py - one align-data corpus from several of the same large model
"""merge_corpus.py OUT IN1 IN2 ...: concatenates bild align-data corpora of one
large model (same row_len, vocab, top-K, fingerprints) into one folder."""
import json, os, shutil, sys
if len(sys.argv) < 4:
    sys.exit('usage: merge_corpus.py OUT IN1 IN2 [IN3...] (OUT must not exist)')
out, ins = sys.argv[1], sys.argv[2:]
if os.path.exists(out):
    sys.exit('merge_corpus: %s exists; give a new folder' % out)
ms = [json.load(open(os.path.join(d, 'manifest.json'))) for d in ins]
keys = ('row_len', 'vocab_size', 'bos_id', 'eos_id', 'vocab_fingerprint')
for m, d in zip(ms[1:], ins[1:]):
    for k in keys:
        if m[k] != ms[0][k]:
            sys.exit('merge_corpus: %s: %s %r differs from %s' % (d, k, m[k], ins[0]))
    if m['settings']['topk'] != ms[0]['settings']['topk'] or m['model']['fnv1a64'] != ms[0]['model']['fnv1a64']:
        sys.exit('merge_corpus: %s: another top-K or model than %s' % (d, ins[0]))
os.makedirs(out)
for f in ms[0]['files'].values():
    with open(os.path.join(out, f), 'wb') as fo:
        for d in ins:
            with open(os.path.join(d, f), 'rb') as fi:
                shutil.copyfileobj(fi, fo, 1 << 24)
m = dict(ms[0])
m['rows'] = sum(x['rows'] for x in ms)
m['tokens'] = sum(x['tokens'] for x in ms)
m['merged_from'] = [{'path': d, 'rows': x['rows'], 'settings': x['settings']} for d, x in zip(ins, ms)]
json.dump(m, open(os.path.join(out, 'manifest.json'), 'w'), indent=1)
print('merge_corpus: %s: %d rows' % (out, m['rows']))
