"""Time the compiled (numba) kernels against their NumPy paths: python scripts/microbench_jit.py"""
import time
from functools import partial

import numpy as np

from cnnkit.ops import im2row, pool
from cnnkit.ops.im2row import im2row as i2r

rng=np.random.default_rng(0)
x=rng.standard_normal((100,12,12,20)).astype(np.float32)
rows,win=i2r(x,(5,5))
def t(f,n=30):
    f()
    t0=time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter()-t0)/n*1e3
for j in (True,False):
    print(f"row2im jit={j} {t(partial(im2row.row2im,rows,x.shape,win,use_jit=j)):.2f} ms")
x2=rng.standard_normal((100,24,24,20)).astype(np.float32)
for j in (True,False):
    y,c=pool.max_pool2d_forward(x2,2,use_jit=j)
    fwd=t(partial(pool.max_pool2d_forward,x2,2,use_jit=j))
    bwd=t(partial(pool.max_pool2d_backward,y,c))
    print(f"maxpool fwd jit={j} {fwd:.2f} ms bwd {bwd:.2f} ms")
