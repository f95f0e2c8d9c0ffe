#!/usr/bin/env python3
# Module-level import graph of the library (src/, `crate::` paths and root re-exports, comments
# stripped) and its cycles: `python3 scripts/import_cycles.py` prints each module's edges and
# "cycles (SCCs): []" when there are none (issue 10: arrows point down only); exit status 1
# when there is one (scripts/test.sh runs it).
import re,os,itertools,sys
root='src'
mods={}
for dp,dn,fn in os.walk(root):
    if '/cli' in dp or dp.endswith('cli'): continue
    for f in fn:
        if not f.endswith('.rs') or f=='main.rs': continue
        p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3]
        parts=rel.split('/')
        if parts[-1]=='mod': parts=parts[:-1]
        if parts==['lib']: continue
        mods['::'.join(parts)]=open(p).read()
# root re-exports: item -> module
lib=open('src/lib.rs').read()
reexp={}
for m in re.finditer(r'pub use (\w+)::\{([^}]*)\}|pub use (\w+)::(\w+);',lib,re.S):
    if m.group(1):
        for it in re.split(r'[,\s]+',m.group(2)):
            if it: reexp[it]=m.group(1)
    else: reexp[m.group(4)]=m.group(3)
top=set(k.split('::')[0] for k in mods)
def topof(k): return k.split('::')[0]
edges={}
for k,src in mods.items():
    # strip comments
    s=re.sub(r'//[^\n]*','',src)
    deps=set()
    for m in re.finditer(r'crate::(\w+)',s):
        n=m.group(1)
        if n in top: deps.add(n)
        elif n in reexp: deps.add(reexp[n])
    for m in re.finditer(r'crate::\{([^}]*)\}',s,re.S):
        for it in re.split(r'[,\s]+',m.group(1)):
            it=it.split('::')[0]
            if it in top: deps.add(it)
            elif it in reexp: deps.add(reexp[it])
    for m in re.finditer(r'\bsuper::(\w+)',s):
        pass
    t=topof(k)
    edges.setdefault(t,set()).update(d for d in deps if d!=t)
for k in sorted(edges): print(k,'->',sorted(edges[k]))
# find cycles via SCC
idx={};low={};st=[];on=set();out=[];c=[0]
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: out.append(comp)
sys.setrecursionlimit(10000)
for v in list(edges):
    if v not in idx: sc(v)
print('cycles (SCCs):',out)
sys.exit(1 if out else 0)
