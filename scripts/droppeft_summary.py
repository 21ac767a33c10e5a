import json, sys, glob, os, statistics as st
from collections import Counter, defaultdict
d = sys.argv[1]; target = float(sys.argv[2]) if len(sys.argv) > 2 else 0.8
rows = []
for f in sorted(glob.glob(os.path.join(d, '*.json'))):
    name = os.path.basename(f)[:-5]
    try: j = json.load(open(f))
    except Exception: continue
    R = j['rows']
    accs = [(r['round'], r['accuracy'], r['simulatedSeconds']) for r in R if r.get('accuracy') is not None]
    t = next(((rd, s) for rd, a, s in accs if a >= target), None)
    peaks = [dv['peakMemoryBytes'] for r in R for dv in r['devices'] if dv.get('samples', 0) > 0]
    model = [dv['memoryBytes'] for r in R for dv in r['devices'] if dv.get('samples', 0) > 0]
    cfg = Counter(dv['configuration'] for r in R for dv in r['devices'] if dv.get('samples', 0) > 0)
    last3 = st.mean(a for _, a, _ in accs[-3:]) if accs else float('nan')
    rows.append((name, len(R), accs[-1][1] if accs else float('nan'), last3, t, st.mean(peaks) / 2**20, max(peaks) / 2**20,
                 st.mean(model) / 2**20, R[-1]['simulatedSeconds'], dict(cfg)))
print('| run | rounds | final | mean last 3 | to %.0f%%: round, sim s | mean peak MiB | largest | model MiB | sim s total | configurations |' % (100 * target))
print('| --- ' * 10 + '|')
for n, k, fa, l3, t, mp, lp, mm, ss, cfg in rows:
    print('| %s | %d | %.1f%% | %.1f%% | %s | %.0f | %.0f | %.0f | %.1f | %s |' % (n, k, 100 * fa, 100 * l3, ('r%d, %.1f' % t) if t else 'not reached', mp, lp, mm, ss,
          ', '.join('%s x%d' % (c, v) for c, v in sorted(cfg.items()))))
