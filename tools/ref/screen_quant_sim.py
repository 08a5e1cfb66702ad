#!/usr/bin/env python3
"""screen_quant_sim.py - how many candidate rows the classifier's screen
(model/transformer.c, screen_argmax) would leave per greedy step for
different copies of the classifier: bf16 weights, or int8 weights with a
scale per row and the activations x quantised to 7, 8, 12 or 16 bits with
a scale per step. A model of the bound in float64 (each copy's error bound
per row from the actual rounding errors), over the 128 positions of a
120-token greedy run of stories15M from a fixed prompt, using llama2c_ref.py's forward. Used to
choose the int8 copy with f32 activations (docs/engine.md).

usage: /usr/bin/python3 tools/ref/screen_quant_sim.py [models/stories15M/stories15M.bin]
"""
import sys, math, numpy as np, torch
sys.path.insert(0, __import__('os').path.dirname(__file__))
import llama2c_ref as R
cfg,w = R.load_checkpoint(sys.argv[1] if len(sys.argv) > 1 else 'models/stories15M/stories15M.bin')
pieces=None
# tokens: greedy run of 200 from a prompt
toks=[1, 9038, 2501, 263, 931, 29892, 727, 471]
with torch.no_grad():
  for i in range(120):
    lg=R.forward(cfg,w,toks)
    toks.append(int(lg[-1].argmax()))
  # capture final x
  cap={}
  orig=R.rmsnorm
  xs=[]
  def rn(x,wt):
    y=orig(x,wt); xs.append(y); return y
  R.rmsnorm=rn
  R.forward(cfg,w,toks)
  X=xs[-1].double().numpy()  # (T,d)
W=w['wcls'].double().numpy()
V,d=W.shape
F=X@W.T
nw=np.linalg.norm(W,axis=1)
u=2**-24; g=d*u/(1-d*u)
def cands(A,M):
    L=(A-M).max(1,keepdims=True)
    return ((A+M)>=L).sum(1)
# bf16
def bf16(a):
    a=a.astype(np.float32).view(np.uint32)
    r=((a+0x7fff+((a>>16)&1))&0xffff0000).view(np.float32)
    return r.astype(np.float64)
Wb=bf16(W); A=X@Wb.T
M=(2**-8+g*2)*nw[None,:]*np.linalg.norm(X,axis=1)[:,None]
print('bf16 cands mean',cands(A,M).mean(),'max',cands(A,M).max())
# int8 w per row, x per token with bits bx
s=np.abs(W).max(1)/127; q=np.round(W/s[:,None]); Wq=q*s[:,None]; dr=np.abs(W-Wq).max(1)
for bx in (7,8,12,16):
    qm=2**(bx-1)-1
    sx=np.abs(X).max(1)/qm; Xq=np.round(X/sx[:,None])*sx[:,None]; dx=np.abs(X-Xq).max(1)
    A=Xq@Wq.T
    M=g*nw[None,:]*np.linalg.norm(X,axis=1)[:,None] + dr[None,:]*np.abs(X).sum(1)[:,None] + dx[:,None]*np.abs(Wq).sum(1)[None,:]
    c=cands(A,M); print('int8 w, x bits',bx,'cands mean',c.mean(),'max',c.max(), 'median',np.median(c))
print('max|x|/rms', (np.abs(X).max(1)/np.sqrt((X**2).mean(1))).mean())
